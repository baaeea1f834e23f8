"""A client sends nothing to a runtime dir or socket that is not its own user's alone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentplex.client import Client
from agentplex.protocol import errors as e

VICTIM, SQUATTER = 65533, 65534

SQUAT = """
import fcntl, os, sys, zmq
run = sys.argv[1]
os.mkdir(run)
os.chmod(run, 0o777)
lock = os.open(run + "/daemon.lock", os.O_RDWR | os.O_CREAT, 0o666)
os.write(lock, f"{os.getpid()}\\n".encode())
fcntl.flock(lock, fcntl.LOCK_EX)
ctx = zmq.Context()
router, events = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
router.bind(f"ipc://{run}/control.sock")
events.bind(f"ipc://{run}/events.sock")
for name in ("control.sock", "events.sock"):
    os.chmod(f"{run}/{name}", 0o777)
print("ready", flush=True)
while True:
    print(repr(router.recv_multipart()), flush=True)
"""


def as_uid(uid: int) -> list[str]:
    """The prefix that runs a command as ``uid`` (and its own group, no others)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@pytest.fixture
def squatted() -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The victim's default runtime dir (no XDG_RUNTIME_DIR), made first by another user
    who listens there as if they were the victim's daemon."""
    if os.getuid() != 0:
        pytest.skip("playing two other users needs root")
    runtime_dir = Path(f"/tmp/agentplex-{VICTIM}")
    shutil.rmtree(runtime_dir, ignore_errors=True)
    squatter = subprocess.Popen(
        [*as_uid(SQUATTER), sys.executable, "-c", SQUAT, str(runtime_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "ready\n"
        yield runtime_dir, squatter
    finally:
        squatter.kill()
        squatter.wait(timeout=30)
        shutil.rmtree(runtime_dir, ignore_errors=True)


def test_a_client_refuses_a_default_runtime_dir_another_user_made_first(
    squatted: tuple[Path, subprocess.Popen[str]],
) -> None:
    runtime_dir, squatter = squatted
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTPLEX_"))}
    start = ["start", "-b", "exec", "--env", "API_KEY=hunter2", "--", "sleep", "1"]
    done = subprocess.run(
        [*as_uid(VICTIM), sys.executable, "-m", "agentplex.cli.main", "--timeout", "3", *start],
        env=dict(env, HOME="/nonexistent"),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    squatter.send_signal(signal.SIGTERM)
    received, _ = squatter.communicate(timeout=30)

    assert "hunter2" not in received
    assert done.returncode == e.EXIT_NOPERM, done.stderr
    line, = done.stderr.strip().splitlines()
    assert str(runtime_dir) in line and f"belongs to uid {SQUATTER}" in line


def test_a_client_refuses_a_runtime_dir_others_may_write_to(short_tmp: Path) -> None:
    runtime_dir = short_tmp / "run"
    runtime_dir.mkdir()
    runtime_dir.chmod(0o777)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(runtime_dir / "control.sock"))
        listener.listen()

        with pytest.raises(e.UnsafeDirectory, match="writable by others"):
            Client(runtime_dir).list()
