"""Finding every process of a session: all that descends from it, whatever it did since.

The daemon is a child subreaper, so every process any session started is its descendant.
A session's processes are found two ways (``[daemon] process_tracking``):

* ``cgroup`` — each session has a cgroup v2 (cgroups.py): exact, a process cannot leave it.
* ``tree`` — the process tree. Each leader is itself a child subreaper, so what its
  descendants orphan stays under it while it lives. When a leader exits, what it left
  re-parents to the daemon: such a child of the daemon is the session's by the lineage
  recorded at an earlier scan (pid and start time), else its process group or session id
  (the leader's pid), else, a last hint, the environment marker (which a child can clear).

Both are combined in ``cgroup`` mode (a process forked in the instant before its leader was
moved into the cgroup is still found by the tree). Reading the process table costs a read of
``/proc/<pid>/stat`` per descendant, so terminates that need a scan at the same moment share
one (shutting down 100 sessions reads /proc a few times, not 100), read in a worker
thread, off the event loop.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Container, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import structlog

from agentplex.supervisor.cgroups import CgroupTree, CgroupUnavailable, SessionCgroup
from agentplex.supervisor.resources import (
    ProcessStat,
    children_of,
    descendants,
    process_table,
    stat_of,
)

log = structlog.get_logger(__name__)

Tracking = Literal["auto", "cgroup", "tree"]
Owners = dict[int, str]
"""Which session each process belongs to, by pid."""

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
    read_at: float = 0.0
    _markers: dict[int, str | None] = field(default_factory=dict)

    async def read(self) -> None:
        """Read the table in a worker thread (a read of /proc/<pid>/stat per process on the
        machine: milliseconds that the loop's every session would wait out), then tell
        whoever joined."""
        try:
            self.read_at, self.stats = await anyio.to_thread.run_sync(_read_descendants)
        finally:
            self.done.set()  # a failed read leaves the scan empty; its joiners go on

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


@dataclass(frozen=True)
class Leader:
    """A process the daemon spawned for a session (its start time tells a reused pid apart)."""

    session_id: str
    started: int
    tracked_at: float


def attribute(
    stats: Mapping[int, ProcessStat],
    leaders: Mapping[int, Leader],
    lineage: Mapping[tuple[int, int], str],
    daemon: int,
) -> Owners:
    """Which session owns each of the daemon's descendants in ``stats``.

    Each child of the daemon is a leader or something a leader left; its whole subtree
    goes with it (the leader, a subreaper, kept its orphans in it while it lived).
    """
    children = children_of(stats)
    owners: Owners = {}
    for pid in children.get(daemon, []):
        session_id = _owner_of(pid, stats[pid], leaders, lineage)
        if session_id is None:
            continue
        stack = [pid]
        while stack:
            member = stack.pop()
            if member not in owners:
                owners[member] = session_id
                stack.extend(children.get(member, ()))
    return owners


def _owner_of(
    pid: int,
    stat: ProcessStat,
    leaders: Mapping[int, Leader],
    lineage: Mapping[tuple[int, int], str],
) -> str | None:
    leader = leaders.get(pid)
    if leader is not None and leader.started == stat.started:
        return leader.session_id
    known = lineage.get((pid, stat.started))
    if known is not None:
        return known
    for group in (stat.pgid, stat.sid):  # what a leader left keeps its group or session
        leader = leaders.get(group)
        if leader is not None:
            return leader.session_id
    return session_marker_of(pid)  # a last hint: a child may have cleared it


class ProcessScanner:
    """Knows which processes are whose; hands out scans read after the request, one scan to
    every request of the same moment."""

    def __init__(self, cgroups: CgroupTree | None = None) -> None:
        self._forming: ProcessScan | None = None
        self.cgroups = cgroups
        """The daemon's cgroup subtree, in ``cgroup`` mode; None in ``tree`` mode."""
        self._leaders: dict[int, Leader] = {}
        self._lineage: dict[tuple[int, int], str] = {}
        self._session_cgroups: dict[str, SessionCgroup] = {}
        # Moving a process into a cgroup waits for an RCU grace period: well under a
        # millisecond when idle, 15 ms and more on a busy machine. One worker thread does the
        # moves, in order, so a spawn never waits for one on the event loop.
        self._joiner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cgroup-join")
        self._joining: dict[str, Future[None]] = {}

    @classmethod
    def for_mode(cls, tracking: Tracking) -> ProcessScanner:
        """A scanner tracking processes as configured (``auto``: a cgroup where we may)."""
        if tracking == "tree":
            return cls()
        tree = CgroupTree.detect()
        if tree is None and tracking == "cgroup":
            raise CgroupUnavailable(
                "process_tracking = 'cgroup' needs a cgroup v2 hierarchy this daemon may "
                "manage (run as root, or in a systemd unit with Delegate=yes)"
            )
        return cls(tree)

    @property
    def mode(self) -> Literal["cgroup", "tree"]:
        return "cgroup" if self.cgroups is not None else "tree"

    def track(self, session_id: str, pid: int) -> None:
        """Own a leader just spawned for ``session_id``: known by pid at once, moved into its
        cgroup by the worker thread (until then the tree finds its processes)."""
        stat = stat_of(pid)
        if stat is not None:
            self._leaders[pid] = Leader(session_id, stat.started, time.monotonic())
        if self.cgroups is None:
            return
        cgroup = self._session_cgroups.get(session_id) or SessionCgroup(
            self.cgroups.root / session_id
        )
        self._session_cgroups[session_id] = cgroup
        self._joining[session_id] = self._joiner.submit(_join, self.cgroups, cgroup, pid)

    def joined(self, session_id: str) -> bool:
        """Whether the session's last leader has been moved into its cgroup (or failed to)."""
        joining = self._joining.get(session_id)
        return joining is None or joining.done()

    def forget(self, session_id: str) -> None:
        """The session ended: remove its cgroup once empty (kept children keep it)."""
        self._joining.pop(session_id, None)
        cgroup = self._session_cgroups.get(session_id)
        if cgroup is not None and cgroup.remove():
            del self._session_cgroups[session_id]

    def cgroup_of(self, session_id: str) -> SessionCgroup | None:
        return self._session_cgroups.get(session_id)

    def cgroup_empty(self, session_id: str) -> bool:
        """True if the session has a cgroup and nothing is in it (False when unknown).

        Trusted without a scan: only a process forked in the instant between its leader's
        spawn and the leader's move into the cgroup is outside it; a terminate and the
        daemon's shutdown still find that one by the tree."""
        cgroup = self._session_cgroups.get(session_id)
        return cgroup is not None and self.joined(session_id) and not cgroup.members()

    def cgroups_in_use(self) -> list[str]:
        """The sessions that have a cgroup still (ended ones whose children were kept too)."""
        return list(self._session_cgroups)

    async def members(self, session_id: str) -> list[int]:
        """Every live process of the session now, leaders included."""
        scan = await self.scan()
        owners = self.learn(scan.stats, scan.read_at)
        pids = {pid for pid, owner in owners.items() if owner == session_id}
        cgroup = self._session_cgroups.get(session_id)
        if cgroup is not None:
            pids.update(pid for pid in cgroup.members() if pid in scan.stats)
        return sorted(pids)

    async def everything(self) -> list[int]:
        """Every live descendant of the daemon and member of its cgroups (at shutdown)."""
        scan = await self.scan()
        pids = set(scan.stats)
        for cgroup in self._session_cgroups.values():
            pids.update(cgroup.members())
        pids.discard(os.getpid())
        return sorted(pids)

    def learn(self, stats: Mapping[int, ProcessStat], read_at: float) -> Owners:
        """Attribute a process table read at ``read_at``; remember its lineage for when a
        leader is gone. Leaders nothing refers to any more are forgotten."""
        owners = attribute(stats, self._leaders, self._lineage, os.getpid())
        self._lineage = {(pid, stats[pid].started): owner for pid, owner in owners.items()}
        referred = set(stats)
        for stat in stats.values():
            referred.update((stat.pgid, stat.sid))
        self._leaders = {
            pid: leader
            for pid, leader in self._leaders.items()
            if pid in referred or leader.tracked_at >= read_at
        }
        return owners

    def assigner(self) -> Callable[[Mapping[int, ProcessStat]], dict[str, list[int]]]:
        """For a worker thread (limits.py): a function from a process table to each
        session's processes, on a snapshot of what this scanner knows now."""
        leaders, lineage = dict(self._leaders), dict(self._lineage)
        cgroups = dict(self._session_cgroups)
        daemon = os.getpid()

        def assign(stats: Mapping[int, ProcessStat]) -> dict[str, list[int]]:
            members: defaultdict[str, set[int]] = defaultdict(set)
            for pid, owner in attribute(stats, leaders, lineage, daemon).items():
                members[owner].add(pid)
            for session_id, cgroup in cgroups.items():
                members[session_id].update(pid for pid in cgroup.members() if pid in stats)
            return {session_id: sorted(pids) for session_id, pids in members.items()}

        return assign

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
            self._forming = None  # a request from now on needs a read begun after it
            with anyio.CancelScope(shield=True):  # its joiners wait for it, cancelled or not
                await scan.read()
        return scan


def _read_descendants() -> tuple[float, dict[int, ProcessStat]]:
    """In a worker thread: when, and the daemon's live descendants."""
    read_at = time.monotonic()
    table = process_table()
    return read_at, {pid: table[pid] for pid in descendants(os.getpid(), table)}


def _join(tree: CgroupTree, cgroup: SessionCgroup, pid: int) -> None:
    """In the worker thread: make the session's cgroup if need be and move ``pid`` into it."""
    try:
        tree.session(cgroup.path.name)
        cgroup.add(pid)
    except OSError as exc:  # it exited already, or no descriptor: the tree finds the rest
        log.warning("cgroup_join_failed", cgroup=cgroup.path.name, pid=pid, error=str(exc))
