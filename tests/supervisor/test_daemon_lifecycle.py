"""The daemon's runtime dir: private, locked against a second daemon, cleaned up on exit."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from support import DaemonProcess

from agentplex.client import Client


def test_runtime_dir_is_private_and_sockets_are_owner_only(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.runtime_dir.stat().st_mode) == 0o700
    for name in ("control.sock", "events.sock"):
        mode = (daemon.runtime_dir / name).stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) & 0o077 == 0


def test_a_second_daemon_on_the_same_runtime_dir_is_refused_in_one_line(
    daemon: DaemonProcess,
) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", "daemon"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 4
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "already running" in lines[0] and str(daemon.process.pid) in lines[0]
    with daemon.client() as client:
        assert client.ping().pid == daemon.process.pid


def test_two_daemons_on_separate_dirs_run_side_by_side(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    from support import start_daemon

    other = start_daemon(short_tmp / "other")
    try:
        with daemon.client() as a, Client(other.runtime_dir) as b:
            a.start("exec", argv=["cat"], tag="a")
            assert a.list().sessions[0].tag == "a"
            assert b.list().sessions == []
            assert a.ping().pid != b.ping().pid
    finally:
        assert other.stop() == 0
