"""TreeSampler: the RSS and CPU of each session's process tree, one pass over /proc.

Each process is read once per sample, from ``/proc/<pid>/stat`` alone (its parent, process
group, CPU ticks and resident pages), so sampling hundreds of idle sessions costs the daemon
well under 1 % of a core.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeUsage:
    """What one process tree uses right now."""

    rss_bytes: int = 0
    cpu_percent: float = 0.0
    """Since the previous sample, summed over the tree's processes (100 = one core)."""
    processes: int = 0


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """What ``/proc/<pid>/stat`` says of one live process."""

    ppid: int
    pgid: int
    sid: int
    """Its session id (the pid of the ``setsid`` caller it descends from)."""
    cpu_ticks: int
    rss_pages: int
    started: int
    """Start time in ticks since boot: with the pid, tells a reused pid apart."""


class TreeSampler:
    """Samples process trees by their root pid. Keep one sampler: CPU is measured between
    two samples, so a process seen for the first time shows 0 %."""

    def __init__(self) -> None:
        self._previous: dict[tuple[int, int], int] = {}
        self._previous_at = time.monotonic()

    def sample(
        self,
        roots: Mapping[str, int],
        subreaper: int | None = None,
        assign: Callable[[Mapping[int, ProcessStat]], Mapping[str, list[int]]] | None = None,
    ) -> dict[str, TreeUsage]:
        """Usage by key for each root pid and its descendants.

        ``subreaper``: the daemon's pid. Orphans re-parented to it still belong to the
        tree whose process group they are in. ``assign``: instead, who owns which process
        (the daemon's process tracking, scanner.py), given the process table.
        """
        stats = process_table()
        now = time.monotonic()
        elapsed = max(now - self._previous_at, 1e-6)
        if assign is not None:
            members = {key: pids for key, pids in assign(stats).items() if key in roots}
        else:
            members = _members(roots, stats, subreaper)
        usage = {key: self._measure(pids, stats, elapsed) for key, pids in members.items()}
        self._previous = {(pid, s.started): s.cpu_ticks for pid, s in stats.items()}
        self._previous_at = now
        return usage

    def _measure(
        self, pids: list[int], stats: Mapping[int, ProcessStat], elapsed: float
    ) -> TreeUsage:
        rss = ticks = 0
        for pid in pids:
            stat = stats[pid]
            rss += stat.rss_pages * _PAGE
            before = self._previous.get((pid, stat.started))
            if before is not None:
                ticks += stat.cpu_ticks - before
        cpu = 100.0 * ticks / _TICKS / elapsed
        return TreeUsage(rss_bytes=rss, cpu_percent=round(cpu, 1), processes=len(pids))


def start_time(pid: int) -> float | None:
    """When a live process started, in seconds since boot; None if it is gone or a zombie.

    With the pid, proof that a process is the one the daemon started. Counted from boot, it
    is immune to changes of the wall clock (psutil's epoch-based ``create_time`` is not).
    """
    stat = _read(pid)
    return None if stat is None else stat.started / _TICKS


def stat_of(pid: int) -> ProcessStat | None:
    """What ``/proc/<pid>/stat`` says of a live process; None if it is gone or a zombie."""
    return _read(pid)


def process_table() -> dict[int, ProcessStat]:
    """Every live (not zombie) process on the machine, one read of /proc/<pid>/stat each."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _read(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def _read(pid: int) -> ProcessStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain anything.
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":  # a zombie has ended: it counts for nothing
        return None
    return ProcessStat(
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        rss_pages=int(fields[21]),
        started=int(fields[19]),
    )


def _members(
    roots: Mapping[str, int], stats: Mapping[int, ProcessStat], subreaper: int | None
) -> dict[str, list[int]]:
    children = children_of(stats)
    by_group = {pid: key for key, pid in roots.items()}
    orphans: defaultdict[str, list[int]] = defaultdict(list)
    for pid in children.get(subreaper, []) if subreaper else []:
        key = by_group.get(stats[pid].pgid)
        if key is not None and pid not in by_group:
            orphans[key].append(pid)
    return {key: _tree([root, *orphans[key]], children, stats) for key, root in roots.items()}


def children_of(stats: Mapping[int, ProcessStat]) -> dict[int, list[int]]:
    """Each pid's children, from a process table."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid, stat in stats.items():
        children[stat.ppid].append(pid)
    return children


def descendants(root: int, stats: Mapping[int, ProcessStat]) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself)."""
    return _tree([root], children_of(stats), stats)[1:] if root in stats else []


def _tree(
    starts: list[int], children: Mapping[int, list[int]], stats: Mapping[int, ProcessStat]
) -> list[int]:
    found, stack = [], [pid for pid in starts if pid in stats]
    visited: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in visited:
            continue
        visited.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def daemon_usage() -> tuple[int, int, float, float]:
    """This process's RSS bytes, open fds, CPU seconds and start time (epoch seconds)."""
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        return me.memory_info().rss, me.num_fds(), times.user + times.system, me.create_time()
