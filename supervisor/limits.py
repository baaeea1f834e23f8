"""Per-session limits: run time, idle time, memory, process count.

One watcher samples every live session each interval: time limits need only clocks,
memory and process caps one scan of the daemon's descendants for all sessions together.
A session over a limit is terminated, and the limit is named in its ``session.terminated``
event and its transcript footer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio
import psutil
import structlog
from anyio.abc import TaskGroup

from agentplex.supervisor.config import Config
from agentplex.supervisor.process_group import find_session_processes
from agentplex.supervisor.session import Session

log = structlog.get_logger(__name__)

SessionsFn = Callable[[], Iterable[Session]]


@dataclass(frozen=True)
class Usage:
    """What one sample found of a session's processes."""

    processes: int
    rss_bytes: int


class LimitWatch:
    """Ends sessions that exceed a configured limit (a limit of 0 is off)."""

    def __init__(self, config: Config, task_group: TaskGroup) -> None:
        self._config = config
        self._tg = task_group
        self._ending: set[str] = set()

    @property
    def samples_processes(self) -> bool:
        return bool(self._config.max_processes or self._config.max_rss_bytes)

    async def run(self, sessions: SessionsFn) -> None:
        """Check every ``limit_interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(self._config.limit_interval)
            self.check(list(sessions()), time.time())

    def check(self, sessions: list[Session], now: float) -> None:
        """End each live session that is over a limit."""
        live = [s for s in sessions if not s.status.ended and s.id not in self._ending]
        usage = self._sample(live) if self.samples_processes else {}
        for session in live:
            reason = self._exceeded(session, usage.get(session.id), now)
            if reason:
                self._end(session, reason)

    def _exceeded(self, session: Session, usage: Usage | None, now: float) -> str | None:
        config = self._config
        if config.max_run_time and now - session.created_at > config.max_run_time:
            return f"limit: max_run_time ({config.max_run_time:g} s) exceeded"
        idle = now - session.chunks.last_activity
        if config.idle_timeout and idle > config.idle_timeout:
            return f"limit: idle_timeout ({config.idle_timeout:g} s without output or input)"
        if usage and config.max_processes and usage.processes > config.max_processes:
            return f"limit: max_processes ({config.max_processes}) exceeded ({usage.processes})"
        if usage and config.max_rss_bytes and usage.rss_bytes > config.max_rss_bytes:
            mib = usage.rss_bytes / 2**20
            return f"limit: max_rss_bytes ({config.max_rss_bytes}) exceeded ({mib:.0f} MiB)"
        return None

    def _sample(self, sessions: Iterable[Session]) -> dict[str, Usage]:
        groups = [(s.id, s.pid) for s in sessions]
        found = find_session_processes(groups)
        return {sid: _usage(procs) for sid, procs in found.items()}

    def _end(self, session: Session, reason: str) -> None:
        self._ending.add(session.id)
        session.log.warning("session_limit_exceeded", reason=reason)
        self._tg.start_soon(self._terminate, session, reason)

    async def _terminate(self, session: Session, reason: str) -> None:
        try:
            await session.terminate(self._config.terminate_grace, reason)
        finally:
            self._ending.discard(session.id)


def _usage(procs: list[psutil.Process]) -> Usage:
    rss = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return Usage(processes=len(procs), rss_bytes=rss)
