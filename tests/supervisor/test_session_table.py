"""The session table journal: last line wins, torn lines are skipped, it stays compact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
from support import session_info

from agentplex import protocol as p
from agentplex.supervisor.table import (
    COMPACT_SLACK,
    JOURNAL_FILE,
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
