"""The session table journal: last line wins, torn lines are skipped, it stays compact,
and an append cut short by a full disk leaves nothing behind."""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec
from structlog.testing import capture_logs
from support import DaemonProcess, session_info, start_daemon

from agentplex import protocol as p
from agentplex.supervisor.table import (
    COMPACT_SLACK,
    JOURNAL_FILE,
    RETRY_INTERVAL,
    SessionRecord,
    SessionTable,
)


@dataclass
class Entry:
    """A saved thing as the table sees one: an id and its record now."""

    id: str
    status: p.SessionStatus = p.SessionStatus.RUNNING
    turns: int = 0

    def record(self) -> SessionRecord:
        info = session_info(self.id, status=self.status, turns=self.turns)
        return SessionRecord(info=info, command=["true"])


def loaded(state_dir: Path) -> dict[str, SessionRecord]:
    return {record.info.id: record for record in SessionTable(state_dir).load()}


def test_the_last_line_of_a_session_wins_and_first_saved_comes_first(tmp_path: Path) -> None:
    table = SessionTable(tmp_path)
    a, b = Entry("a"), Entry("b")
    table.save_now(a)
    table.save_now(b)
    a.status, a.turns = p.SessionStatus.EXITED, 3
    table.changed(a)
    table.save()

    records = SessionTable(tmp_path).load()

    assert [r.info.id for r in records] == ["a", "b"]
    assert records[0].info.status is p.SessionStatus.EXITED and records[0].info.turns == 3
    assert records[1].info.status is p.SessionStatus.RUNNING


def test_a_torn_last_line_is_skipped_and_the_next_save_starts_a_fresh_line(
    tmp_path: Path,
) -> None:
    table = SessionTable(tmp_path)
    a = Entry("a")
    table.save_now(a)
    table.close()
    journal = tmp_path / JOURNAL_FILE
    whole = journal.read_bytes()
    a.turns = 7
    torn = msgspec.json.encode(a.record())[:40]  # a crash in the middle of an append
    journal.write_bytes(whole + torn)

    reopened = SessionTable(tmp_path)
    assert reopened.load()[0].info.turns == 0  # the torn line is skipped; the earlier stands
    b = Entry("b")
    reopened.save_now(b)

    assert list(loaded(tmp_path)) == ["a", "b"]


def test_the_journal_is_compacted_to_one_line_per_session(tmp_path: Path) -> None:
    table = SessionTable(tmp_path)
    entries = [Entry(str(i)) for i in range(5)]
    for turn in range(2 * COMPACT_SLACK):
        for entry in entries:
            entry.turns = turn
            table.changed(entry)
        table.save()

    lines = (tmp_path / JOURNAL_FILE).read_bytes().splitlines()
    assert len(lines) <= 2 * len(entries) + COMPACT_SLACK
    records = loaded(tmp_path)
    assert {r.info.turns for r in records.values()} == {2 * COMPACT_SLACK - 1}
    assert not (tmp_path / "sessions.tmp").exists()


def test_sessions_recovered_from_a_table_are_kept_through_compaction(tmp_path: Path) -> None:
    first = SessionTable(tmp_path)
    for i in range(3):
        first.save_now(Entry(f"old{i}"))
    first.close()

    table = SessionTable(tmp_path)
    table.load()
    new = Entry("new")
    for turn in range(3 * COMPACT_SLACK):  # never touching the old ones again
        new.turns = turn
        table.changed(new)
        table.save()

    assert list(loaded(tmp_path)) == ["old0", "old1", "old2", "new"]


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files this process writes cannot grow past ``limit`` bytes (a disk about to fill):
    a write crossing it is cut short, the next fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_an_append_cut_short_is_undone_and_saved_once_there_is_room(tmp_path: Path) -> None:
    table = SessionTable(tmp_path)
    table.save_now(Entry("a"))
    journal = tmp_path / JOURNAL_FILE
    before = journal.read_bytes()

    with capture_logs() as logs, file_size_limit(len(before) + 10):
        table.save_now(Entry("b"))  # the kernel writes 10 bytes of it, then refuses

    assert journal.read_bytes() == before  # no torn line left behind
    assert [entry["event"] for entry in logs] == ["session_table_not_saved"]
    assert table.pending
    table.save_now(Entry("c"))  # room again: b's pending change goes out with c's
    assert list(loaded(tmp_path)) == ["a", "b", "c"]
    assert all(msgspec.json.decode(line) for line in journal.read_bytes().splitlines())


def test_a_record_glued_onto_a_torn_line_is_kept_on_loading(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_FILE
    a, b, c, d = (msgspec.json.encode(Entry(name).record()) for name in "abcd")
    # What an old daemon left after a short write: b torn, c glued onto it, then d.
    journal.write_bytes(a + b"\n" + b[:50] + c + b"\n" + d + b"\n")

    table = SessionTable(tmp_path)
    assert [r.info.id for r in table.load()] == ["a", "c", "d"]
    table.save_now(Entry("e"))
    table._compact()  # the repaired line is written back whole

    assert list(loaded(tmp_path)) == ["a", "c", "d", "e"]
    assert journal.read_bytes().count(b"\n") == 4


def test_the_running_table_retries_a_failed_save_without_a_new_change(tmp_path: Path) -> None:
    table = SessionTable(tmp_path)
    table.save_now(Entry("a"))
    limit = (tmp_path / JOURNAL_FILE).stat().st_size + 10

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(table.run)
            with capture_logs() as logs:
                with file_size_limit(limit):
                    table.changed(Entry("b"))
                    with anyio.fail_after(10):
                        while not logs:  # noqa: ASYNC110 (the failure is only logged)
                            await anyio.sleep(0.01)
                with anyio.fail_after(3 * RETRY_INTERVAL + 10):
                    while "b" not in loaded(tmp_path):  # noqa: ASYNC110 (a file to watch)
                        await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert list(loaded(tmp_path)) == ["a", "b"]


def _journal_settled(daemon: DaemonProcess, session_id: str) -> bool:
    """The daemon's journal holds the session as running, on whole lines."""
    journal = daemon.state_dir / JOURNAL_FILE
    data = journal.read_bytes() if journal.exists() else b""
    saved = loaded(daemon.state_dir) if data.endswith(b"\n") else {}
    return session_id in saved and saved[session_id].info.status is p.SessionStatus.RUNNING


def _written(daemon: DaemonProcess, session_id: str) -> bool:
    """The session's id is in the daemon's journal, which ends with a whole line."""
    data = (daemon.state_dir / JOURNAL_FILE).read_bytes()
    return session_id.encode() in data and data.endswith(b"\n")


def _append_tried(daemon: DaemonProcess, size: int) -> bool:
    """The daemon has tried to append to its journal since it was ``size`` bytes long."""
    failed = any(r.get("event") == "session_table_not_saved" for r in daemon.log_lines)
    return failed or (daemon.state_dir / JOURNAL_FILE).stat().st_size != size


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_full_disk_then_a_crash_loses_no_session_from_the_list(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp)
    pid = daemon.process.pid
    sleep = ["sleep", "600"]
    try:
        with daemon.client() as client:
            before = [client.start("exec", argv=sleep).id for _ in range(3)]
            _wait(lambda: _journal_settled(daemon, before[-1]), "the journal to settle")
            journal_size = (daemon.state_dir / JOURNAL_FILE).stat().st_size
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            # The journal is several KiB, a new transcript a few hundred bytes: only the
            # journal's appends hit the limit (the first is cut short, the rest fail).
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (journal_size + 20, hard))
            during = client.start("exec", argv=sleep).id
            _wait(lambda: _append_tried(daemon, journal_size), "an append to the full journal")
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))  # room again
            after = client.start("exec", argv=sleep).id
            _wait(lambda: _written(daemon, after), "the journal to take the new one")
    finally:
        daemon.process.send_signal(signal.SIGKILL)  # the crash
        daemon.process.wait(timeout=30)
        daemon.log_done.wait(10)

    restarted = start_daemon(short_tmp)
    try:
        with restarted.client() as client:
            listed = {s.id for s in client.list().sessions}
            for session in client.list().sessions:
                client.terminate(session.id)
    finally:
        assert restarted.stop() == 0
    assert {*before, during, after} <= listed


def test_recovery_lists_every_session_whose_transcript_exists_though_the_table_lost_it(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp)
    try:
        with daemon.client() as client:
            kept = client.start("exec", argv=["sleep", "600"]).id
            _wait(lambda: _journal_settled(daemon, kept), "the journal to settle")
            journal = daemon.state_dir / JOURNAL_FILE
            lines_of_kept = journal.read_bytes()
            ended = client.start("exec", argv=["sleep", "600"])
            client.terminate(ended.id)
            live = client.start("exec", argv=["sleep", "600"])
            _wait(lambda: _journal_settled(daemon, live.id), "the journal to settle")
    finally:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=30)
        daemon.log_done.wait(10)
    journal.write_bytes(lines_of_kept)  # the journal lost two sessions

    for _ in range(2):  # and what recovery found stays found
        restarted = start_daemon(short_tmp)
        try:
            with restarted.client() as client:
                listed = {s.id: s for s in client.list().sessions}
        finally:
            assert restarted.stop() == 0
        assert {kept, ended.id, live.id} <= set(listed)
        assert listed[ended.id].status is p.SessionStatus.TERMINATED
        assert listed[live.id].status.ended or listed[live.id].status is (
            p.SessionStatus.INTERRUPTED
        )
        assert listed[live.id].transcript == live.transcript
