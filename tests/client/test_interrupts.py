"""Ctrl-C at a terminal ends every CLI command within a second, with exit 130.

Each command runs on a pseudo-terminal that is its controlling terminal, and the test types
the ^C byte: the terminal's line discipline turns it into SIGINT for the foreground process
group, exactly as when a person presses Ctrl-C. Each test first waits until the command is
at the point that used to hang (following output, waiting for a reply) and then allows one
second, measured from the keypress to the exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import DaemonProcess, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client

CTRL_C_DEADLINE = 1.0
"""What the README promises: Ctrl-C ends a command within a second."""
OUTPUT_WAIT = 30.0
CLI = [sys.executable, "-m", "agentplex.cli.main"]
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
"""Makes the terminal on stdin the controlling one, then execs the command (same pid):
a new session whose process group is the terminal's foreground group, so ^C reaches it."""
LIVE_FOREVER = ["--", "bash", "-c", "echo ready-marker; exec cat"]
"""An exec session that says something, then waits on its stdin until it is ended."""


class Terminal:
    """A command running on a pseudo-terminal, and everything it has written to it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", CONTROLLING_TTY, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        self._master = master
        self._output = bytearray()
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Drain the terminal (a full one would block the command) until it closes."""
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                data = b""
            with self._changed:
                self._output += data
                self._changed.notify_all()
            if not data:
                return

    @property
    def output(self) -> str:
        with self._changed:
            return self._output.decode(errors="replace")

    def wait_for(self, text: str, timeout: float = OUTPUT_WAIT) -> None:
        """Wait until ``text`` has been written to the terminal."""
        with self._changed:
            found = self._changed.wait_for(lambda: text.encode() in self._output, timeout)
        assert found, f"{text!r} never appeared; the terminal shows {self.output!r}"

    def press_ctrl_c(self) -> int:
        """Type ^C; return the exit code, failing unless it came within the deadline."""
        os.write(self._master, b"\x03")
        pressed = time.monotonic()
        try:
            code = self.process.wait(timeout=CTRL_C_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {CTRL_C_DEADLINE} s after ^C: {self.output!r}")
        assert time.monotonic() - pressed <= CTRL_C_DEADLINE
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)


@contextmanager
def on_terminal(argv: list[str], env: dict[str, str]) -> Iterator[Terminal]:
    terminal = Terminal(argv, env)
    try:
        yield terminal
    finally:
        terminal.close()


def wait_threads(process: subprocess.Popen[bytes], count: int) -> None:
    """Wait until ``process`` runs ``count`` threads: a client's loop and ZeroMQ's own
    threads exist only once the command is past its imports and is talking to the daemon
    (a ^C during the imports would be Python's, not the command's, to handle)."""
    deadline = time.monotonic() + OUTPUT_WAIT
    while len(os.listdir(f"/proc/{process.pid}/task")) < count:
        assert process.poll() is None, "the command ended early"
        assert time.monotonic() < deadline, "the command never connected"
        time.sleep(0.02)


def wait_blocked(process: subprocess.Popen[bytes]) -> None:
    """Wait until the command's main thread sleeps on a lock: waiting for a reply or a
    chunk, where a Ctrl-C used to hang it (rather than, by luck, between two waits)."""
    task = f"/proc/{process.pid}/task/{process.pid}"
    deadline = time.monotonic() + OUTPUT_WAIT
    while True:
        state = Path(f"{task}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"{task}/wchan").read_text()
        if state == "S" and ("futex" in wchan or wchan == "0"):  # "0": the kernel hides it
            return
        assert time.monotonic() < deadline, f"the command never waited ({state}, {wchan})"
        time.sleep(0.01)


# ---------------------------------------------------------------------- commands


def test_ctrl_c_ends_attach_with_130(daemon: DaemonProcess, client: Client) -> None:
    info = client.start("exec", argv=LIVE_FOREVER[1:])
    with on_terminal([*CLI, "attach", info.id], daemon.env) as terminal:
        terminal.wait_for("ready-marker")
        wait_blocked(terminal.process)
        assert terminal.press_ctrl_c() == 130


def test_ctrl_c_ends_start_attach_with_130(daemon: DaemonProcess) -> None:
    with on_terminal([*CLI, "start", "-b", "demo", "-a", "hi"], daemon.env) as terminal:
        terminal.wait_for("You said: hi")  # the reply, so it is following the session
        wait_blocked(terminal.process)
        assert terminal.press_ctrl_c() == 130


def test_ctrl_c_ends_demo_with_130_and_stops_its_daemon(short_tmp: Path) -> None:
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(short_tmp / "run"),
        AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
        AGENTPLEX_DEMO_DELAY="0.2",  # a turn of several seconds: ^C lands mid-conversation
    )
    with on_terminal([*CLI, "demo"], env) as terminal:
        terminal.wait_for("you> ")
        wait_blocked(terminal.process)
        assert terminal.press_ctrl_c() == 130
    control = short_tmp / "run" / "control.sock"
    deadline = time.monotonic() + OUTPUT_WAIT  # the daemon it started stops on its own
    while control.exists():
        assert time.monotonic() < deadline, "the demo's daemon was left running"
        time.sleep(0.05)


def test_ctrl_c_ends_kill_waiting_out_a_grace_with_130(
    daemon: DaemonProcess, client: Client
) -> None:
    stubborn = "trap 'echo got-term' TERM; echo ready-marker; while :; do sleep 0.1; done"
    info = client.start("exec", argv=["bash", "-c", stubborn])
    kill = [*CLI, "kill", info.id, "--grace", "20"]
    with client.subscribe(p.chunk_topic(info.id)) as events, on_terminal(kill, daemon.env) as t:
        next_event(events, is_chunk(info.id, text="got-term"), OUTPUT_WAIT)
        wait_blocked(t.process)
        assert t.press_ctrl_c() == 130  # while the daemon waits out the grace
    assert info.pid is not None
    os.killpg(info.pid, signal.SIGKILL)  # spare the daemon's stop the rest of the grace


def test_ctrl_c_ends_a_request_to_a_stopped_daemon_with_130(daemon: DaemonProcess) -> None:
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        with on_terminal([*CLI, "--timeout", "30", "ls"], daemon.env) as terminal:
            wait_threads(terminal.process, 3)
            wait_blocked(terminal.process)
            assert terminal.press_ctrl_c() == 130
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)


def test_ctrl_c_ends_the_readme_follow_example(daemon: DaemonProcess, client: Client) -> None:
    info = client.start("exec", argv=LIVE_FOREVER[1:])
    script = (
        "from agentplex.client import Client\n"
        "with Client() as client:\n"
        f"    for chunk in client.follow({info.id!r}):\n"
        "        print(chunk.seq, chunk.kind, chunk.text, flush=True)\n"
    )
    with on_terminal([sys.executable, "-c", script], daemon.env) as terminal:
        terminal.wait_for("ready-marker")
        wait_blocked(terminal.process)
        code = terminal.press_ctrl_c()
        # Python's own KeyboardInterrupt exit: the process ends by SIGINT (shells say 130)
        assert code == -signal.SIGINT
        assert "KeyboardInterrupt" in terminal.output
