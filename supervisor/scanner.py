"""Finding every process of a session: its process group, and strays that left it.

Tools double-fork and ``setsid``; such a process leaves the session's group but keeps
the environment marker every session process is started with. Finding them means
reading the process table, which costs a read of ``/proc/<pid>/stat`` per process on the
machine, so terminates that need a scan at the same moment share one (shutting down 100
sessions reads /proc a few times, not 100).
"""

from __future__ import annotations

import os
from collections.abc import Container
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from agentplex.supervisor.resources import ProcessStat, descendants, process_table

SESSION_MARKER = "AGENTPLEX_SESSION_ID"
"""Set in every session process's environment, so descendants that left the process
group (``setsid``, double fork) can still be told apart by session."""


def session_marker_of(pid: int) -> str | None:
    """The session id in a process's environment marker, if it has one (and we may read it)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None
    marker = f"{SESSION_MARKER}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(marker):
            return entry[len(marker) :].decode(errors="replace")
    return None


@dataclass
class ProcessScan:
    """The daemon's live descendants at one moment (as a subreaper, the daemon is the
    ancestor of every process any session ever started)."""

    stats: dict[int, ProcessStat] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)
    _markers: dict[int, str | None] = field(default_factory=dict)

    def read(self) -> None:
        table = process_table()
        self.stats = {pid: table[pid] for pid in descendants(os.getpid(), table)}
        self.done.set()

    def session_processes(
        self, session_id: str, pgid: int | None, other_groups: Container[int] = ()
    ) -> list[int]:
        """Every process in the group ``pgid`` or carrying the session's marker.

        A process in ``other_groups`` (other sessions' groups) is not read further; only
        strays that left every group have their marker read, once per scan.
        """
        return [
            pid
            for pid, stat in self.stats.items()
            if stat.pgid == pgid
            or (stat.pgid not in other_groups and self._marker(pid) == session_id)
        ]

    def _marker(self, pid: int) -> str | None:
        if pid not in self._markers:
            self._markers[pid] = session_marker_of(pid)
        return self._markers[pid]


class ProcessScanner:
    """Hands out scans read after the request, one scan to every request of the same moment."""

    def __init__(self) -> None:
        self._forming: ProcessScan | None = None

    async def scan(self) -> ProcessScan:
        """A scan of the daemon's descendants, read after this call began."""
        scan = self._forming
        if scan is not None:
            await scan.done.wait()
            return scan
        scan = self._forming = ProcessScan()
        try:
            await anyio.lowlevel.checkpoint()  # whoever needs a scan in this loop pass joins
        finally:
            self._forming = None
            scan.read()
        return scan
