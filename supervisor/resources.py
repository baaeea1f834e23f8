"""TreeSampler: the RSS and CPU of each session's process tree, one pass over /proc."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeUsage:
    """What one process tree uses right now."""

    rss_bytes: int = 0
    cpu_percent: float = 0.0
    """Since the previous sample, summed over the tree's processes (100 = one core)."""
    processes: int = 0


class TreeSampler:
    """Samples process trees by their root pid. Keep one sampler: CPU is measured between
    two samples, so a process seen for the first time shows 0 %."""

    def __init__(self) -> None:
        self._known: dict[int, psutil.Process] = {}

    def sample(
        self, roots: Mapping[str, int], subreaper: int | None = None
    ) -> dict[str, TreeUsage]:
        """Usage by key for each root pid and its descendants.

        ``subreaper``: the daemon's pid. Orphans re-parented to it still belong to the
        tree whose process group they are in.
        """
        members = _members(roots, subreaper)
        seen: dict[int, psutil.Process] = {}
        usage = {key: self._measure(pids, seen) for key, pids in members.items()}
        self._known = seen
        return usage

    def _measure(self, pids: list[int], seen: dict[int, psutil.Process]) -> TreeUsage:
        rss, cpu, count = 0, 0.0, 0
        for pid in pids:
            proc = self._process(pid)
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    cpu += proc.cpu_percent(None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen[pid] = proc
            count += 1
        return TreeUsage(rss_bytes=rss, cpu_percent=round(cpu, 1), processes=count)

    def _process(self, pid: int) -> psutil.Process | None:
        known = self._known.get(pid)
        if known is not None and known.is_running():
            return known
        try:
            return psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None


def _members(roots: Mapping[str, int], subreaper: int | None) -> dict[str, list[int]]:
    children: defaultdict[int, list[int]] = defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        children[proc.info["ppid"]].append(proc.pid)
    by_group = {pid: key for key, pid in roots.items()}
    orphans: defaultdict[str, list[int]] = defaultdict(list)
    for pid in children.get(subreaper, []) if subreaper else []:
        pgid = _pgid(pid)
        key = by_group.get(pgid) if pgid is not None else None
        if key is not None and pid not in by_group:
            orphans[key].append(pid)
    return {key: _tree([root, *orphans[key]], children) for key, root in roots.items()}


def _tree(starts: list[int], children: Mapping[int, list[int]]) -> list[int]:
    found, stack = [], list(starts)
    visited: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in visited:
            continue
        visited.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def daemon_usage() -> tuple[int, int, float, float]:
    """This process's RSS bytes, open fds, CPU seconds and start time (epoch seconds)."""
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        return me.memory_info().rss, me.num_fds(), times.user + times.system, me.create_time()
