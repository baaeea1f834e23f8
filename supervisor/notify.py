"""sd_notify: tell systemd (or whoever set ``$NOTIFY_SOCKET``) how the daemon is doing.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace). No libsystemd needed.
"""

from __future__ import annotations

import collections
import os
import socket
from collections.abc import MutableMapping, Sequence

import anyio
import structlog

from agentplex.protocol import SessionInfo, SessionStatus

log = structlog.get_logger(__name__)


class Notifier:
    """Sends READY/STATUS/STOPPING/WATCHDOG; does nothing when no socket was given."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = _socket_address(address) if address else None
        self.watchdog_interval = watchdog_interval
        """Seconds between WATCHDOG=1 pings (half the manager's timeout), or None."""
        self._socket: socket.socket | None = None
        self._status = ""
        self._stopping = False
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read and remove ``NOTIFY_SOCKET``/``WATCHDOG_*`` so no child inherits them."""
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", None) or None
        usec = environ.pop("WATCHDOG_USEC", "")
        watchdog_pid = environ.pop("WATCHDOG_PID", "")
        interval = None
        if usec.isdigit() and int(usec) > 0 and watchdog_pid in ("", str(os.getpid())):
            interval = int(usec) / 2_000_000
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, sessions: Sequence[SessionInfo]) -> None:
        """The sockets are bound and requests are served; ``sessions``: those it has now."""
        self._status = describe_sessions(sessions)
        self.send("READY=1", f"STATUS={self._status}")

    def stopping(self, live_sessions: int) -> None:
        """Shutdown has begun; later STATUS lines say so too."""
        self._stopping = True
        self.send("STOPPING=1", f"STATUS=stopping: ending {_plural(live_sessions, 'session')}")

    def sessions_changed(self, sessions: Sequence[SessionInfo]) -> None:
        """Send a STATUS line if the session counts it shows have changed."""
        status = describe_sessions(sessions)
        if status != self._status:
            self._status = status
            self.send(f"STATUS={'stopping: ' if self._stopping else ''}{status}")

    async def run_watchdog(self) -> None:
        """Ping the watchdog at half its timeout, for as long as the event loop runs."""
        if not self.enabled or self.watchdog_interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await anyio.sleep(self.watchdog_interval)

    def send(self, *assignments: str) -> None:
        """Send one datagram; a failure is logged once and never stops the daemon."""
        if self.address is None:
            return
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        try:
            self._socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("notify_failed", socket=self.address, error=str(exc))
            self._failed = True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def describe_sessions(sessions: Sequence[SessionInfo]) -> str:
    """``2 live sessions (1 running, 1 idle), 3 ended`` for a STATUS line."""
    live = [s for s in sessions if not s.status.ended]
    counts = collections.Counter(s.status for s in live)
    text = _plural(len(live), "live session")
    if counts:
        by_status = [
            f"{counts[status]} {status.value}" for status in SessionStatus if counts[status]
        ]
        text += " (" + ", ".join(by_status) + ")"
    ended = len(sessions) - len(live)
    return f"{text}, {ended} ended" if ended else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _socket_address(address: str) -> str:
    """A path as is; ``@name`` as the abstract-namespace address ``\\0name``."""
    return "\0" + address[1:] if address.startswith("@") else address
