"""Signalling processes and waiting for their ends with a bounded number of pidfds.

A pidfd is the exact way to signal a process and learn that it ended (no reused pid, no
polling), but it is a descriptor: a shutdown of 215 sessions opening one per process at
once ran the daemon out of them (EMFILE), and not one transcript got its footer. So at most
:data:`MAX_PIDFDS` are open at a time in the whole daemon; a process that gets none (all in
use, or ``pidfd_open`` failed for want of descriptors) is signalled by its pid and polled,
its start time telling it apart from a process that took its pid since.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterable

import anyio

MAX_PIDFDS = 64
"""Pidfds open at once in the daemon (within ``fd_reserve``)."""
POLL_FIRST = 0.01
POLL_MAX = 0.25
"""Polling a process without a pidfd: first after this many seconds, backing off to this."""
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


class _Allowance:
    """How many more pidfds the daemon may open (one event loop: no lock needed)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        self.left += 1


ALLOWANCE = _Allowance(MAX_PIDFDS)


class Watched:
    """Processes being stopped: each through a pidfd if one was to be had, else by pid."""

    def __init__(self) -> None:
        self.pidfds: dict[int, int] = {}
        self.polled: dict[int, bytes] = {}
        """Processes without a pidfd, by pid: their start time (from /proc/<pid>/stat)."""

    @classmethod
    def open(cls, pids: Iterable[int]) -> Watched:
        """Watch ``pids`` (those already gone are left out)."""
        watched = cls()
        for pid in pids:
            watched._add(pid)
        return watched

    def _add(self, pid: int) -> None:
        if ALLOWANCE.take():
            try:
                self.pidfds[pid] = os.pidfd_open(pid)
                return
            except ProcessLookupError:
                ALLOWANCE.give_back()
                return
            except OSError as exc:
                ALLOWANCE.give_back()
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
        started = _start_time(pid)
        if started is not None:
            self.polled[pid] = started

    def __len__(self) -> int:
        return len(self.pidfds) + len(self.polled)

    def pids(self) -> list[int]:
        return sorted([*self.pidfds, *self.polled])

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every watched process still running."""
        for fd in self.pidfds.values():
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                continue
        for pid in list(self.polled):
            if not self._still_running(pid):
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                del self.polled[pid]

    async def wait_exited(self, timeout: float) -> bool:
        """True if every process ended within ``timeout`` (a pidfd turns readable on exit;
        the others are looked at, less and less often)."""
        with anyio.move_on_after(timeout):
            for fd in self.pidfds.values():
                await anyio.wait_readable(fd)
            delay = POLL_FIRST
            while any(self._still_running(pid) for pid in list(self.polled)):
                await anyio.sleep(delay)
                delay = min(delay * 2, POLL_MAX)
            return True
        return False

    def _still_running(self, pid: int) -> bool:
        started = self.polled.get(pid)
        if started is None:
            return False
        now = _start_time(pid)
        known = started is not _UNKNOWN and now is not _UNKNOWN
        if now is None or (known and now != started):
            del self.polled[pid]  # ended (or a zombie, or its pid is another process's now)
            return False
        if started is _UNKNOWN and now is not _UNKNOWN:
            self.polled[pid] = now  # /proc could be read again: remember who it is
        return True

    def close(self) -> None:
        """Close the pidfds and give them back to the daemon's allowance."""
        for fd in self.pidfds.values():
            os.close(fd)
            ALLOWANCE.give_back()
        self.pidfds.clear()
        self.polled.clear()


_UNKNOWN = b"?"
"""A start time that could not be read for want of a descriptor: assume still running."""


def _start_time(pid: int) -> bytes | None:
    """A running process's start time (field 22 of /proc/<pid>/stat); None if it is gone or
    a zombie, :data:`_UNKNOWN` if /proc could not be read for want of descriptors."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError as exc:
        if exc.errno in _OUT_OF_DESCRIPTORS:
            return _UNKNOWN if _exists(pid) else None
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return None if fields[0] == b"Z" else fields[19]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, someone else's
        return True
    return True
