"""``agentplex top`` in a pseudo-terminal: it shows every live session and follows events."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest
from support import DaemonProcess, session_info

from agentplex import protocol as p
from agentplex.cli.top import TopView

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """``agentplex top`` on a pty of 50x160; reads the frames it draws."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentplex.cli.main", "top", *args],
            env=dict(daemon.env, TERM="xterm"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = ""

    def screen(self) -> str:
        """The last complete frame, escapes removed."""
        frames = re.findall(r"\x1b\[H(.*?)\x1b\[J", self.output, re.S)
        return ESCAPE.sub("", frames[-1]) if frames else ""

    def wait_for(self, *texts: str, absent: tuple[str, ...] = (), timeout: float = 20.0) -> str:
        """Read until one frame shows every text and none of ``absent``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(t in screen for t in texts) and not any(t in screen for t in absent):
                return screen
            left = deadline - time.monotonic()
            assert left > 0, f"top never showed {texts} without {absent}:\n{screen}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the other end closed: top exited
                    raise AssertionError(f"top exited:\n{self.output[-2000:]}") from None

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        """Wait for top to exit (it was told to quit); its exit code."""
        try:
            return self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.master >= 0:
                os.close(self.master)
                self.master = -1


@pytest.fixture
def terminal(daemon: DaemonProcess) -> Iterator[Terminal]:
    term = Terminal(daemon)
    yield term
    if term.master >= 0 and term.process.poll() is None:
        term.type(b"q")
    term.close()


def test_top_shows_every_live_session_and_follows_events(
    daemon: DaemonProcess, terminal: Terminal
) -> None:
    with daemon.client() as c:
        before = [c.start("exec", argv=["cat"], tag=f"before-{i}") for i in range(3)]
        screen = terminal.wait_for(*(s.id[:8] for s in before), "3 live sessions (3 running)")
        for s in before:
            line = next(line for line in screen.splitlines() if s.id[:8] in line)
            assert s.tag in line and "exec" in line and "running" in line
            assert re.search(r"\d+\.\dK|\d+\.\dM", line), line  # RSS from the process tree
        after = c.start("exec", argv=["cat"], tag="after")
        terminal.wait_for(after.id[:8], "after", "4 live sessions")
        c.terminate(before[0].id)
        terminal.wait_for("3 live sessions", after.id[:8], absent=(before[0].id[:8],))
        c.send("hello", after.id)
    terminal.type(b"q")
    assert terminal.close() == 0


def test_top_once_prints_one_table_without_a_terminal(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        info = c.start("exec", argv=["cat"], tag="plain")
    done = daemon.cli("top", "--once")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert info.id[:8] in done.stdout and "plain" in done.stdout


def test_chunk_rates_come_from_chunk_events() -> None:
    info = session_info("abcdef012345", tag="t", persona_icon="🤖")
    view = TopView(p.Sessions(sessions=[info], active=info.id), daemon_pid=1, now=0.0)
    for i in range(10):
        chunk = p.Chunk(
            session_id=info.id,
            seq=i + 1,
            stream=p.Stream.STDOUT,
            kind=p.ChunkKind.TEXT,
            text="x",
            ts=0.0,
        )
        view.apply(chunk, now=100.0 + i * 0.1)
    line = view.lines(160, 50, now=101.0, wall=60.0)[2]
    assert line.startswith("* 🤖 abcdef01 t ")
    assert " 2.0 " in line  # 10 chunks in the 5 s window
    later = view.lines(160, 50, now=120.0, wall=80.0)[2]
    assert " 0.0 " in later
    stopped = p.StatusChanged(
        session_id=info.id,
        status=p.SessionStatus.TERMINATED,
        previous=p.SessionStatus.RUNNING,
        ts=0.0,
    )
    view.apply(stopped, now=121.0)
    assert info.id[:8] not in "\n".join(view.lines(160, 50, now=121.0, wall=81.0))
