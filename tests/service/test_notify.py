"""sd_notify: the daemon tells its service manager READY, STATUS, WATCHDOG and STOPPING."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.supervisor.notify import Notifier, describe_sessions


class NotifyListener:
    """The service manager's end: a datagram socket that collects what the daemon says."""

    def __init__(self, address: str) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.lines: list[str] = []

    def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        """Collect datagrams until a line starting with ``prefix`` arrives; return it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.socket.settimeout(left)
            try:
                datagram = self.socket.recv(4096).decode()
            except TimeoutError:
                break
            self.lines.extend(datagram.splitlines())
            if any(line.startswith(prefix) for line in datagram.splitlines()):
                return next(line for line in reversed(self.lines) if line.startswith(prefix))
        raise AssertionError(f"no {prefix!r} within {timeout} s; got {self.lines}")

    def first(self, prefix: str) -> int:
        return next(i for i, line in enumerate(self.lines) if line.startswith(prefix))


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(str(short_tmp / "notify.sock"))
    yield sock
    sock.socket.close()


def test_daemon_says_ready_status_watchdog_then_stopping_in_that_order(
    short_tmp: Path, listener: NotifyListener
) -> None:
    env = {"NOTIFY_SOCKET": str(short_tmp / "notify.sock"), "WATCHDOG_USEC": "100000"}
    daemon = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1")
        with daemon.client() as client:
            client.start("exec", argv=["cat"], tag="notify")
        listener.wait_for("STATUS=1 live session (1 running)")
    finally:
        assert daemon.stop() == 0
    listener.wait_for("STOPPING=1")
    order = [listener.first(x) for x in ("READY=1", "STATUS=", "WATCHDOG=1", "STOPPING=1")]
    assert order == sorted(order), listener.lines
    after_stop = listener.lines[listener.first("STOPPING=1") + 1 :]
    assert "STATUS=stopping: ending 1 session" in after_stop


def test_the_daemon_keeps_the_notify_variables_from_its_sessions(
    short_tmp: Path, listener: NotifyListener
) -> None:
    env = {"NOTIFY_SOCKET": str(short_tmp / "notify.sock"), "WATCHDOG_USEC": "5000000"}
    daemon = start_daemon(short_tmp, env=env)
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start("exec", argv=["sh", "-c", "echo notify=${NOTIFY_SOCKET:-none}"])
            chunk = next_event(events, is_chunk(info.id, text="notify="))
        assert chunk.text == "notify=none"  # type: ignore[union-attr]
    finally:
        assert daemon.stop() == 0


def test_abstract_namespace_sockets_are_reached() -> None:
    name = f"@agentplex-test-{secrets.token_hex(6)}"
    listener = NotifyListener(name)
    try:
        notifier = Notifier(name)
        notifier.ready([])
        notifier.stopping(0)
        notifier.close()
        listener.wait_for("STOPPING=1", timeout=5)
        assert listener.lines[0] == "READY=1"
    finally:
        listener.socket.close()


def test_the_watchdog_is_ours_only_if_watchdog_pid_is_this_process() -> None:
    environ = {"NOTIFY_SOCKET": "/nowhere", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(environ).watchdog_interval is None
    assert environ == {}  # read and removed, so no child inherits them
    mine = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(mine).watchdog_interval == 15.0


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    notifier.ready([])
    notifier.stopping(3)


def test_a_vanished_socket_is_logged_once_not_raised(short_tmp: Path) -> None:
    notifier = Notifier(str(short_tmp / "gone.sock"))
    with capture_logs() as logs:
        notifier.ready([])
        notifier.send("WATCHDOG=1")
    notifier.close()
    assert [entry["event"] for entry in logs] == ["notify_failed"]


def test_status_lines_count_sessions_by_status() -> None:
    def info(sid: str, status: p.SessionStatus) -> p.SessionInfo:
        return p.SessionInfo(
            id=sid,
            backend="exec",
            persona=None,
            tag=None,
            cwd="/",
            status=status,
            created_at=0.0,
            pid=None,
            cli_session_id=None,
            turns=0,
            chunks=0,
            transcript="",
        )

    sessions = [
        info("a", p.SessionStatus.RUNNING),
        info("b", p.SessionStatus.IDLE),
        info("c", p.SessionStatus.RUNNING),
        info("d", p.SessionStatus.TERMINATED),
    ]
    assert describe_sessions(sessions) == "3 live sessions (2 running, 1 idle), 1 ended"
    assert describe_sessions([]) == "0 live sessions"
