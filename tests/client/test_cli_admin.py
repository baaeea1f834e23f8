"""The CLI's small surprises around the daemon: ``--version``, the global flags given after
``daemon``, and ``demo --state-dir`` against a daemon that already runs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from support import DaemonProcess, start_daemon

from agentplex.client import Client
from agentplex.client.async_client import check_daemon_running
from agentplex.protocol import errors as e
from agentplex.protocol.paths import RuntimePaths

CLI = [sys.executable, "-m", "agentplex.cli.main"]


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"agentplex {version('agentplex')}\n")


def test_the_runtime_dir_flag_is_taken_after_daemon_as_the_hint_says(short_tmp: Path) -> None:
    elsewhere = short_tmp / "elsewhere"
    with pytest.raises(e.DaemonNotRunning) as no_daemon:
        check_daemon_running(RuntimePaths(elsewhere))
    assert f"agentplex daemon --runtime-dir {elsewhere}" in no_daemon.value.message
    # AGENTPLEX_RUNTIME_DIR names short_tmp/run: the flag after "daemon" beats it.
    daemon = start_daemon(short_tmp, "--runtime-dir", str(elsewhere))
    try:
        with Client(elsewhere) as client:
            assert client.ping().runtime_dir == str(elsewhere)
        assert not (short_tmp / "run").exists()
    finally:
        assert daemon.stop() == 0


def test_demo_refuses_a_state_dir_a_running_daemon_does_not_use(daemon: DaemonProcess) -> None:
    other = daemon.state_dir.parent / "other-state"
    done = daemon.cli("demo", "--state-dir", str(other), timeout=120)
    assert done.returncode == e.EXIT_USAGE, done.stderr
    assert done.stderr == (
        f"agentplex demo: --state-dir {other} is for a daemon the demo starts, but daemon "
        f"{daemon.process.pid} already runs in {daemon.runtime_dir} with state dir "
        f"{daemon.state_dir}: stop it, or give the demo a runtime dir of its own "
        "(agentplex --runtime-dir DIR demo ...)\n"
    )
    assert not other.exists()
    with daemon.client() as client:
        assert client.list(all=True).sessions == []  # no demo session was started


def test_demo_with_the_running_daemons_own_state_dir_runs(daemon: DaemonProcess) -> None:
    done = daemon.cli("demo", "--turns", "1", "--state-dir", str(daemon.state_dir), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "session ended" in done.stdout
