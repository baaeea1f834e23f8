"""One daemon per state dir and per runtime dir; directories it was not given to own are
never changed, and never trusted."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import start_daemon

from agentplex import protocol as p
from agentplex.protocol import errors as e

NOBODY = 65534
START_TIMEOUT = 30.0


def daemon_command(runtime_dir: Path, state_dir: Path) -> subprocess.Popen[str]:
    """``agentplex daemon`` on these dirs, not waited for."""
    env = dict(
        os.environ, AGENTPLEX_RUNTIME_DIR=str(runtime_dir), AGENTPLEX_STATE_DIR=str(state_dir)
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agentplex.cli.main", "daemon", "--log-format", "json"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def refused(process: subprocess.Popen[str], code: int) -> str:
    """The one line a daemon that must not start printed; it must exit ``code`` at once."""
    try:
        _, stderr = process.communicate(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=START_TIMEOUT)
        raise AssertionError("the daemon started where it must have been refused") from None
    assert process.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentplex daemon: "), stderr
    return lines[0]


def test_a_second_daemon_on_the_same_state_dir_is_refused_and_the_first_keeps_its_agents(
    short_tmp: Path,
) -> None:
    first = start_daemon(short_tmp)
    try:
        with first.client() as client:
            agent = client.start("exec", argv=["sleep", "600"])

        second = daemon_command(short_tmp / "run2", first.state_dir)
        line = refused(second, e.EXIT_CONFLICT)

        assert str(first.state_dir) in line and f"pid {first.process.pid}" in line
        with first.client() as client:
            assert client.list().sessions[0].status is p.SessionStatus.RUNNING
            client.terminate(agent.id)
    finally:
        assert first.stop() == 0
    footers = Path(agent.transcript).read_bytes().count(b'"type":"footer"')
    assert footers == 1


def test_removing_the_runtime_dir_does_not_let_a_second_daemon_start_on_its_path(
    short_tmp: Path,
) -> None:
    first = start_daemon(short_tmp)
    try:
        shutil.rmtree(first.runtime_dir)

        second = daemon_command(first.runtime_dir, short_tmp / "state2")
        line = refused(second, e.EXIT_CONFLICT)

        assert str(first.runtime_dir) in line and f"pid {first.process.pid}" in line
    finally:
        assert first.stop() == 0


def test_a_stopping_daemon_leaves_a_socket_it_did_not_bind(short_tmp: Path) -> None:
    first = start_daemon(short_tmp)
    shutil.rmtree(first.runtime_dir)
    first.runtime_dir.mkdir(mode=0o700)
    # What a second daemon on the same path would have bound meanwhile.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(first.runtime_dir / "control.sock"))

        assert first.stop() == 0

        assert stat.S_ISSOCK(os.lstat(first.runtime_dir / "control.sock").st_mode)


def shared_dir(base: Path) -> Path:
    """A directory like /tmp: anyone may create entries in it (mode 1777)."""
    base.chmod(0o711)  # another user may reach it
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


@pytest.mark.parametrize("through_a_symlink", [True, False], ids=["symlink", "direct"])
def test_the_daemon_refuses_a_shared_dir_and_leaves_its_mode_alone(
    short_tmp: Path, through_a_symlink: bool
) -> None:
    shared = shared_dir(short_tmp)
    runtime_dir = shared
    if through_a_symlink:
        runtime_dir = short_tmp / "run"
        runtime_dir.symlink_to(shared)

    line = refused(daemon_command(runtime_dir, short_tmp / "state"), e.EXIT_NOPERM)

    assert "shared directory" in line
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


@pytest.mark.parametrize("which", ["runtime", "state"])
def test_a_refused_dir_is_not_left_behind(short_tmp: Path, which: str) -> None:
    open_dir = short_tmp / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # world-writable, no sticky bit: anyone could swap our dir away
    unsafe = open_dir / "deeper" / which
    dirs = {"runtime": short_tmp / "run", "state": short_tmp / "state", which: unsafe}

    line = refused(daemon_command(dirs["runtime"], dirs["state"]), e.EXIT_NOPERM)

    assert "no sticky bit" in line
    assert list(open_dir.iterdir()) == []  # neither the dir nor the parent made for it


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


needs_root = pytest.mark.skipif(os.getuid() != 0, reason="creating a dir as another uid needs root")


@needs_root
def test_the_daemon_refuses_a_runtime_dir_another_user_created_first(short_tmp: Path) -> None:
    squatted = shared_dir(short_tmp) / "run"
    subprocess.run(
        ["mkdir", "-m", "0777", str(squatted)], preexec_fn=as_nobody, check=True, timeout=30
    )

    line = refused(daemon_command(squatted, short_tmp / "state"), e.EXIT_NOPERM)

    assert f"belongs to uid {NOBODY}" in line
    assert stat.S_IMODE(squatted.stat().st_mode) == 0o777


def test_a_dir_prepared_in_a_shared_dir_before_the_daemon_is_refused(short_tmp: Path) -> None:
    prepared = shared_dir(short_tmp) / "run"
    prepared.mkdir(mode=0o755)  # ours, but not private: someone may have made it for us
    prepared.chmod(0o755)

    line = refused(daemon_command(prepared, short_tmp / "state"), e.EXIT_NOPERM)

    assert "existed before the daemon" in line


def test_a_private_dir_in_a_shared_dir_is_created_private(short_tmp: Path) -> None:
    daemon = start_daemon(shared_dir(short_tmp))  # its runtime and state dirs in there
    try:
        for path in (daemon.runtime_dir, daemon.state_dir):
            mode = os.lstat(path).st_mode
            assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700
    finally:
        assert daemon.stop() == 0


def test_a_client_says_at_once_that_no_daemon_runs_when_the_lock_pid_was_reused(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=30)
    daemon.log_done.wait(10)
    # Its socket is left behind, and its pid now belongs to a live process (this one).
    (daemon.runtime_dir / "daemon.lock").write_text(f"{os.getpid()}\n")

    began = time.monotonic()
    done = daemon.cli("ls")

    assert done.returncode == e.EXIT_UNAVAILABLE, done.stderr
    assert "no agentplex daemon is running" in done.stderr
    assert time.monotonic() - began < 8  # not the 10 s request timeout
