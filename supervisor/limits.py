"""Per-session resources and limits: run time, idle time, memory, process count.

One watcher samples every live session each ``limit_interval``: one pass over /proc
measures every session's process tree (RSS, CPU, processes). The figures go into each
session's info (``agentplex top``, ``list``); a session over a limit is terminated, and the
limit is named in its ``session.terminated`` event and its transcript footer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

import anyio
from anyio.abc import TaskGroup

from agentplex.supervisor.config import Config
from agentplex.supervisor.resources import ProcessStat, TreeSampler, TreeUsage
from agentplex.supervisor.scanner import ProcessScanner
from agentplex.supervisor.session import Session

SessionsFn = Callable[[], Iterable[Session]]
RSS_CHANGE = 1 << 20
"""A session's figures are republished when its RSS moves by this much or its CPU by 1 %."""


class LimitWatch:
    """Samples sessions' resources and ends those over a configured limit (0 is off)."""

    def __init__(
        self,
        config: Config,
        task_group: TaskGroup,
        on_change: Callable[[], None],
        scanner: ProcessScanner | None = None,
    ) -> None:
        self._config = config
        self._tg = task_group
        self._on_change = on_change
        self._sampler = TreeSampler()
        self._scanner = scanner
        """Who owns which process (the whole tree, strays and cgroup members included);
        without, a session is its leader's tree and the orphans in its process group."""
        self._ending: set[str] = set()

    async def run(self, sessions: SessionsFn) -> None:
        """Sample and check every ``limit_interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(self._config.limit_interval)
            await self.check(sessions)

    async def check(self, sessions: SessionsFn) -> None:
        """Sample every live session's process tree, then apply the figures.

        Walking /proc takes milliseconds per hundred processes: it runs in a worker thread
        (as metrics does) so the loop keeps serving. Sessions are read and updated only
        here, on the loop; one that ended while the thread ran is left as it is.
        """
        live = [s for s in sessions() if not s.status.ended]
        if self._scanner is None:
            roots = {s.id: pid for s in live if (pid := s.pid) is not None}
            usage = await anyio.to_thread.run_sync(self._sample, roots) if roots else {}
        else:  # a session whose leader exited may still have processes (kept children)
            usage = await self._sample_owned({s.id: s.pid or 0 for s in live})
        self.apply([s for s in live if not s.status.ended], usage, time.time())

    def _sample(self, roots: dict[str, int]) -> dict[str, TreeUsage]:
        """In a worker thread: one pass over /proc. Touches nothing but the sampler, which
        only this watch uses, one sample at a time."""
        return self._sampler.sample(roots, subreaper=os.getpid())

    async def _sample_owned(self, sessions: dict[str, int]) -> dict[str, TreeUsage]:
        """Sample each session's processes as the scanner attributes them, in a worker
        thread; then let the scanner learn their lineage from the table read (so what a
        leader leaves behind is still known as the session's once the leader is gone)."""
        assert self._scanner is not None
        assign = self._scanner.assigner()
        read: list[Mapping[int, ProcessStat]] = []

        def assign_and_keep(stats: Mapping[int, ProcessStat]) -> Mapping[str, list[int]]:
            read.append(stats)
            return assign(stats)

        before = time.monotonic()  # leaders tracked after this may be missing from the read
        usage = await anyio.to_thread.run_sync(
            lambda: self._sampler.sample(sessions, assign=assign_and_keep)
        )
        for stats in read:
            self._scanner.learn(stats, before)
        return usage

    def apply(self, live: list[Session], usage: dict[str, TreeUsage], now: float) -> None:
        """Record each live session's usage; end each one that is over a limit."""
        changed = False
        for session in live:
            sample = usage.get(session.id)
            changed |= _noticeably_different(session.resources, sample)
            session.resources = sample
            if session.id not in self._ending and (reason := self._exceeded(session, now)):
                self._end(session, reason)
        if changed:
            self._on_change()

    def _exceeded(self, session: Session, now: float) -> str | None:
        config, usage = self._config, session.resources
        if config.max_run_time and now - session.created_at > config.max_run_time:
            return f"limit: max_run_time ({config.max_run_time:g} s) exceeded"
        if config.idle_timeout and now - session.chunks.last_activity > config.idle_timeout:
            return f"limit: idle_timeout ({config.idle_timeout:g} s without output or input)"
        if usage and config.max_processes and usage.processes > config.max_processes:
            return f"limit: max_processes ({config.max_processes}) exceeded ({usage.processes})"
        if usage and config.max_rss_bytes and usage.rss_bytes > config.max_rss_bytes:
            mib = usage.rss_bytes / 2**20
            return f"limit: max_rss_bytes ({config.max_rss_bytes}) exceeded ({mib:.0f} MiB)"
        return None

    def _end(self, session: Session, reason: str) -> None:
        self._ending.add(session.id)
        session.log.warning("session_limit_exceeded", reason=reason)
        self._tg.start_soon(self._terminate, session, reason)

    async def _terminate(self, session: Session, reason: str) -> None:
        try:
            await session.terminate(self._config.terminate_grace, reason)
        finally:
            self._ending.discard(session.id)


def _noticeably_different(old: TreeUsage | None, new: TreeUsage | None) -> bool:
    if old is None or new is None:
        return old is not new
    return (
        abs(old.rss_bytes - new.rss_bytes) >= RSS_CHANGE
        or abs(old.cpu_percent - new.cpu_percent) >= 1.0
        or old.processes != new.processes
    )
