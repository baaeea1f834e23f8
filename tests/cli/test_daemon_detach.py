"""``agentplex daemon --detach`` returns once the daemon serves; ``--stop`` ends it.

The reproduction (before the fix): the README's tour ran ``agentplex daemon &`` and at once
``agentplex start --backend demo "hello"``, which failed with exit 69 "no agentplex daemon
is running" because the backgrounded daemon was still importing; nothing in the CLI let a
script start a daemon and go on once it served (``--detach`` was an unknown flag, exit 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agentplex.client import Client
from agentplex.client.runtime_dir import lock_held
from agentplex.protocol.errors import EXIT_CONFLICT, EXIT_UNAVAILABLE
from agentplex.protocol.paths import RuntimePaths

STOP_TIMEOUT = 30.0


def run_cli(base: Path, *args: str, dirs: bool = True) -> subprocess.CompletedProcess[str]:
    """``agentplex ARGS`` with no user config file and (``dirs``) the dirs under ``base``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPLEX_")}
    env.update(XDG_CONFIG_HOME=str(base / "xdg"), AGENTPLEX_DEMO_DELAY="0.002")
    if dirs:
        env.update(AGENTPLEX_RUNTIME_DIR=str(base / "run"), AGENTPLEX_STATE_DIR=str(base / "state"))
    return subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop_by_lock(runtime_dir: Path) -> None:
    """SIGTERM the daemon holding ``runtime_dir``'s lock (its pid is written in it) and
    wait until the lock is released: a test leaves no daemon behind, even a failing one."""
    paths = RuntimePaths(runtime_dir)
    if not lock_held(paths.lock):
        return
    pid = int(paths.lock.read_text().strip() or 0)
    if pid:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not lock_held(paths.lock), STOP_TIMEOUT)


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (reparented, not yet reaped)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def base(short_tmp: Path) -> Iterator[Path]:
    """``short_tmp``, and whatever daemon a test detached there stopped afterwards."""
    try:
        yield short_tmp
    finally:
        stop_by_lock(short_tmp / "run")
        stop_by_lock(short_tmp / "cfg-run")


def test_detach_returns_quietly_once_the_daemon_serves_so_start_works_at_once(
    base: Path,
) -> None:
    detached = run_cli(base, "daemon", "--detach", "--grace", "2")
    assert (detached.returncode, detached.stdout, detached.stderr) == (0, "", "")
    started = run_cli(base, "start", "--backend", "demo", "hi")  # at once: no wait, no retry
    assert started.returncode == 0, started.stderr
    assert len(started.stdout.strip()) == 36  # the new session's UUID
    with Client(base / "run") as client:
        pid = client.ping().pid
    log = (base / "state" / "daemon.log").read_text()
    assert '"daemon_ready"' in log and str(pid) in log  # its output went to STATE/daemon.log
    assert os.getsid(pid) == pid  # its own session: the terminal's signals miss it


def test_a_second_detach_on_the_same_runtime_dir_fails_with_the_daemons_error(
    base: Path,
) -> None:
    assert run_cli(base, "daemon", "--detach").returncode == 0
    with Client(base / "run") as client:
        first = client.ping().pid
    second = run_cli(base, "daemon", "--detach")
    assert second.returncode == EXIT_CONFLICT
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("agentplex daemon: a daemon is already running on ")
    assert f"pid {first}" in lines[0]
    with Client(base / "run") as client:
        assert client.ping().pid == first  # the first one still serves


def test_stop_ends_the_daemon_and_returns_once_it_is_gone(base: Path) -> None:
    assert run_cli(base, "daemon", "--detach", "--grace", "1").returncode == 0
    with Client(base / "run") as client:
        pid = client.ping().pid
    stopped = run_cli(base, "daemon", "--stop")
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (0, "", "")
    assert not lock_held(RuntimePaths(base / "run").lock)  # at once, no waiting here
    wait_until(lambda: gone(pid), STOP_TIMEOUT)  # the lock goes with the process's last fd
    assert '"daemon_stopped"' in (base / "state" / "daemon.log").read_text()


def test_stop_with_no_daemon_running_fails_in_one_line(base: Path) -> None:
    stopped = run_cli(base, "daemon", "--stop")
    assert stopped.returncode == EXIT_UNAVAILABLE
    assert stopped.stderr.startswith("agentplex daemon: no agentplex daemon is running at ")
    assert len(stopped.stderr.splitlines()) == 1


def test_detach_and_stop_use_the_config_files_dirs(base: Path) -> None:
    config = base / "config.toml"
    config.write_text(f'[dirs]\nruntime = "{base}/cfg-run"\nstate = "{base}/cfg-state"\n')
    detached = run_cli(base, "--config", str(config), "daemon", "--detach", dirs=False)
    assert detached.returncode == 0, detached.stderr
    with Client(base / "cfg-run") as client:
        assert client.ping().state_dir == str(base / "cfg-state")
    assert (base / "cfg-state" / "daemon.log").exists()
    stopped = run_cli(base, "daemon", "--stop", "--config", str(config), dirs=False)
    assert stopped.returncode == 0, stopped.stderr
    assert not lock_held(RuntimePaths(base / "cfg-run").lock)


def test_detach_and_stop_exclude_each_other(base: Path) -> None:
    both = run_cli(base, "daemon", "--detach", "--stop")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    assert not (base / "run").exists()  # nothing was started


def test_demo_whose_daemon_cannot_start_fails_in_lines_not_a_traceback(base: Path) -> None:
    # Before: the demo's DaemonNotRunning escaped as a Python traceback.
    assert run_cli(base, "daemon", "--detach").returncode == 0  # holds base/state
    env_dirs = ("--runtime-dir", str(base / "other-run"), "demo", "--state-dir")
    demo = run_cli(base, *env_dirs, str(base / "state"), dirs=False)
    assert demo.returncode == EXIT_UNAVAILABLE, demo.stderr
    assert "Traceback" not in demo.stderr
    assert demo.stderr.splitlines()[-1].startswith("agentplex demo: ")
    assert "already using the state dir" in demo.stderr  # the daemon's own reason
