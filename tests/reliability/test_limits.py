"""Limits end a session, and say which limit in its terminated event and its footer."""

from __future__ import annotations

import sys
from pathlib import Path

from support import DaemonProcess, descendants_with_marker, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client.transcripts import read_records

FORK_BOMB = (
    "import os, time\n"
    "for _ in range(2000):\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(300)\n"
    "        os._exit(0)\n"
    "    time.sleep(0.005)\n"
    "time.sleep(300)\n"
)
HOG = "import time\nhog = bytearray(300 * 2**20)\nprint('allocated', flush=True)\ntime.sleep(300)"


def _limited_daemon(base: Path, **limits: str) -> DaemonProcess:
    env = {f"AGENTPLEX_{key.upper()}": value for key, value in limits.items()}
    return start_daemon(base, "--grace", "1", env={"AGENTPLEX_LIMIT_INTERVAL": "0.1", **env})


def _ended_by_limit(daemon: DaemonProcess, argv: list[str], limit: str) -> p.SessionTerminated:
    with daemon.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=argv)
        ended = next_event(
            events,
            lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id,
            timeout=60,
        )
    assert isinstance(ended, p.SessionTerminated)
    assert limit in ended.reason
    footer = list(read_records(info.transcript))[-1]
    assert isinstance(footer, p.Footer) and limit in footer.reason
    assert descendants_with_marker(info.id) == []
    return ended


def test_a_fork_bomb_is_stopped_by_the_process_cap(short_tmp: Path) -> None:
    daemon = _limited_daemon(short_tmp, max_processes="20")
    try:
        ended = _ended_by_limit(daemon, [sys.executable, "-c", FORK_BOMB], "max_processes (20)")
        assert ended.session.status is p.SessionStatus.TERMINATED
    finally:
        assert daemon.stop() == 0


def test_a_session_over_its_memory_cap_is_stopped(short_tmp: Path) -> None:
    daemon = _limited_daemon(short_tmp, max_rss_bytes=str(100 * 2**20))
    try:
        _ended_by_limit(daemon, [sys.executable, "-c", HOG], "max_rss_bytes")
    finally:
        assert daemon.stop() == 0


def test_run_time_and_idle_limits_end_sessions(short_tmp: Path) -> None:
    daemon = _limited_daemon(short_tmp, max_run_time="1")
    try:
        _ended_by_limit(daemon, ["sleep", "300"], "max_run_time (1 s)")
    finally:
        assert daemon.stop() == 0
    idle = _limited_daemon(short_tmp / "idle", idle_timeout="1")
    try:
        _ended_by_limit(idle, ["cat"], "idle_timeout (1 s")
    finally:
        assert idle.stop() == 0
