"""Retention: old transcripts are compressed or deleted by policy, purged on request,
and a live session's transcript is never touched."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import DaemonProcess, start_daemon

from agentplex.cli.admin import parse_before
from agentplex.protocol.errors import InvalidArgument
from agentplex.supervisor.retention import RetentionPolicy, apply_policy, purge, select

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
    assert "would delete 1 transcripts" in dry.stderr
    assert Path(finished.transcript).exists()
    done = daemon.cli("purge", "--tag", "work", "--json")
    assert json.loads(done.stdout) == [finished.transcript]
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
