"""Retention: old transcripts are compressed or deleted by policy, purged on request,
and a live session's transcript is never touched."""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.cli.admin import parse_before
from agentplex.client import Client
from agentplex.protocol.errors import EXIT_NOINPUT, InvalidArgument, TranscriptGone
from agentplex.supervisor.retention import (
    Outcome,
    RetentionPolicy,
    apply_policy,
    purge,
    select,
)

DAY = 86400.0


def transcript(sessions: Path, tag: str, name: str, age_days: float, text: str = "") -> Path:
    path = sessions / tag / f"{name}-20240101T000000Z.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text or f'{{"type":"header","session_id":"{name}"}}\n' * 50)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a condition the daemon makes true, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_old_transcripts_are_compressed_then_deleted_and_live_ones_kept(tmp_path: Path) -> None:
    fresh = transcript(tmp_path, "a", "fresh", 1)
    old = transcript(tmp_path, "a", "old", 10)
    ancient = transcript(tmp_path, "b", "ancient", 100)
    live = transcript(tmp_path, "b", "live", 100)
    content, mtime = old.read_bytes(), old.stat().st_mtime
    policy = RetentionPolicy(compress_after=7 * DAY, delete_after=90 * DAY)
    outcome = apply_policy(tmp_path, policy, live={live})
    assert outcome.compressed == [old] and outcome.deleted == [ancient]
    packed = old.with_name(old.name + ".gz")
    assert gzip.decompress(packed.read_bytes()) == content
    assert packed.stat().st_mtime == mtime  # its age is kept, so it is deleted on time
    assert not old.exists() and not ancient.exists()
    assert fresh.exists() and live.exists()
    assert outcome.freed_bytes > 0
    later = apply_policy(tmp_path, policy, live=set(), now=time.time() + 85 * DAY)
    assert later.deleted == [packed, live]


def test_select_by_tag_and_date_skips_live_transcripts(tmp_path: Path) -> None:
    a_old = transcript(tmp_path, "a", "a-old", 30)
    a_new = transcript(tmp_path, "a", "a-new", 0)
    a_live = transcript(tmp_path, "a", "a-live", 30)
    b_old = transcript(tmp_path, "b", "b-old", 30)
    live = {a_live}
    assert select(tmp_path, live=live, tag="a") == [a_new, a_old]
    assert select(tmp_path, live=live, before=time.time() - DAY) == [a_old, b_old]
    assert select(tmp_path, live=live, tag="b", before=time.time() - DAY) == [b_old]
    with pytest.raises(ValueError, match="not a tag"):
        select(tmp_path, live=live, tag="../..")
    dry = purge([a_old], dry_run=True)
    assert dry.deleted == [a_old] and a_old.exists()
    assert purge([a_old]).deleted == [a_old] and not a_old.exists()


def test_before_takes_dates_times_and_ages() -> None:
    now = 1_700_000_000.0
    assert parse_before("30d", now) == now - 30 * DAY
    assert parse_before("12h", now) == now - 12 * 3600
    assert parse_before("2024-05-01T00:00:00+00:00") == 1714521600.0
    local_midnight = time.mktime((2024, 5, 1, 0, 0, 0, 0, 0, -1))
    assert parse_before("2024-05-01") == local_midnight
    with pytest.raises(InvalidArgument, match="--before 'yesterday'"):
        parse_before("yesterday")


def test_purge_lists_what_it_deleted_and_spares_the_live_session(daemon: DaemonProcess) -> None:
    sessions = daemon.state_dir / "sessions"
    with daemon.client() as client:
        live = client.start("exec", argv=["cat"], tag="work")
        finished = client.start("exec", argv=["true"], tag="work")
        client.terminate(finished.id)
    other = transcript(sessions, "other", "x", 0)
    dry = daemon.cli("purge", "--tag", "work", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [finished.transcript]
    assert "would delete 1 transcript (" in dry.stderr  # one transcript, not "1 transcripts"
    assert Path(finished.transcript).exists()
    done = daemon.cli("purge", "--tag", "work", "--json")
    assert json.loads(done.stdout) == [finished.transcript]
    assert "agentplex purge: deleted 1 transcript (" in done.stderr
    assert not Path(finished.transcript).exists()
    assert Path(live.transcript).exists() and other.exists()
    assert daemon.cli("purge").returncode == 2  # nothing named: refused


def test_the_daemon_applies_the_policy_when_it_starts(short_tmp: Path) -> None:
    sessions = short_tmp / "state" / "sessions"
    old = transcript(sessions, "t", "old", 40)
    stale = transcript(sessions, "t", "stale", 400)
    env = {
        "AGENTPLEX_RETENTION_COMPRESS_AFTER_DAYS": "30",
        "AGENTPLEX_RETENTION_DELETE_AFTER_DAYS": "365",
    }
    daemon = start_daemon(short_tmp, env=env)
    try:
        wait_until(lambda: any(r["event"] == "retention_applied" for r in daemon.log_lines))
        assert not stale.exists() and not old.exists()
        assert old.with_name(old.name + ".gz").exists()
    finally:
        assert daemon.stop() == 0
    logged = [r for r in daemon.log_lines if r["event"] == "retention_applied"]
    assert logged[0]["compressed"] == 1 and logged[0]["deleted"] == 1


def test_outcomes_are_told_with_the_right_plural() -> None:
    one, two = [Path("a.jsonl")], [Path("a.jsonl"), Path("b.jsonl")]
    assert Outcome(deleted=one).summary() == "deleted 1 transcript (0.0 MiB)"
    assert Outcome(deleted=two).summary(dry_run=True) == "would delete 2 transcripts (0.0 MiB)"
    both = Outcome(compressed=two, deleted=one, freed_bytes=3 << 20)
    assert both.summary() == "compressed 2 transcripts, deleted 1 transcript (3.0 MiB)"
    assert Outcome().summary() == "deleted 0 transcripts (0.0 MiB)"


LINES = [f"line {i}" for i in range(1, 21)]
PRINTS = f"print('\\n'.join({LINES!r}))"
COMPRESS_AT_ONCE = {
    "AGENTPLEX_RETENTION_COMPRESS_AFTER_DAYS": "0.00001",  # under a second
    "AGENTPLEX_RETENTION_EVERY_HOURS": "0.0001",  # a pass every 0.36 s
    "AGENTPLEX_REPLAY_RING_CHUNKS": "2",  # so that replay reads the transcript
}


def _run_to_end(client: Client, tag: str) -> p.SessionInfo:
    """A session that prints LINES and ends."""
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", PRINTS], tag=tag)
        next_event(
            events,
            lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id,
            timeout=30,
        )
    return info


def _texts(page: p.Replayed) -> list[str]:
    return [chunk.text for raw in page.chunks for chunk in p.expand(p.chunk_decoder.decode(raw))]


def _reads_whole(daemon: DaemonProcess, info: p.SessionInfo) -> None:
    """Replay, follow, attach and logs all read the session's whole (compressed) transcript."""
    with daemon.client() as client:
        assert _texts(client.replay(info.id, 1, limit=100)) == LINES
        assert [chunk.text for chunk in client.follow(info.id)] == LINES
    attach = daemon.cli("attach", info.id)
    assert (attach.returncode, attach.stdout) == (0, "".join(f"{x}\n" for x in LINES)), attach
    logs = daemon.cli("logs", info.id)
    assert (logs.returncode, logs.stdout) == (0, f"{info.transcript}.gz\n"), logs
    cat = daemon.cli("logs", "--cat", info.id)
    assert cat.returncode == 0, cat.stderr
    kinds = [json.loads(line)["type"] for line in cat.stdout.splitlines()]
    assert kinds[0] == "header" and kinds[-1] == "footer" and "agent.chunks" in kinds


def test_a_transcript_compressed_by_retention_still_reads_everywhere(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, env=COMPRESS_AT_ONCE)
    try:
        with daemon.client() as client:
            info = _run_to_end(client, "old")
        packed = Path(info.transcript + ".gz")
        wait_until(lambda: packed.exists() and not Path(info.transcript).exists())
        _reads_whole(daemon, info)
    finally:
        assert daemon.stop() == 0
    # Restarted with keep_ended 0, the daemon holds it no more: the table's archive
    # rebuilds it on demand, and it is read from the .gz all the same.
    daemon = start_daemon(short_tmp, env={**COMPRESS_AT_ONCE, "AGENTPLEX_KEEP_ENDED": "0"})
    try:
        with daemon.client() as client:
            assert info.id not in [s.id for s in client.list().sessions]
            assert info.id in [s.id for s in client.list(all=True).sessions]
        _reads_whole(daemon, info)
    finally:
        assert daemon.stop() == 0


def test_a_purged_session_leaves_ls_and_says_its_transcript_is_gone(
    daemon: DaemonProcess, client: Client
) -> None:
    info = _run_to_end(client, "scratch")
    kept = _run_to_end(client, "keep")
    purged = daemon.cli("purge", "--tag", "scratch")
    assert purged.returncode == 0, purged.stderr
    assert "agentplex purge: deleted 1 transcript (" in purged.stderr
    for everything in (False, True):
        listed = [s.id for s in client.list(all=everything).sessions]
        assert info.id not in listed and kept.id in listed
    for command in (["logs"], ["logs", "--cat"], ["attach"]):
        done = daemon.cli(*command, info.id)
        assert done.returncode == EXIT_NOINPUT, done
        assert done.stderr.startswith(f"agentplex {command[0]}: the transcript "), done.stderr
        assert "was deleted" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(TranscriptGone, match="was deleted"):
        client.replay(info.id)
    assert _texts(client.replay(kept.id)) == LINES
