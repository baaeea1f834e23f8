"""The daemon's file descriptors: its limit, raised at start-up, and the budget that keeps
it from ever being reached.

Running out is not an error the daemon could report: libzmq asserts when ``accept`` fails
with EMFILE (``ipc_listener.cpp``) and the whole daemon aborts, every agent with it. So
the daemon never lets sessions take the last descriptors. Each session holds a few for its
life (:data:`PER_SESSION`); a start that could bring the daemon within ``reserve`` of its
limit is refused with ``too_many_open_files``, and the reserve is left for what comes and
goes: client connections, replays reading transcripts, pidfds while stopping processes,
the session table, a scrape of the metrics.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass

import structlog

from agentplex.protocol.errors import TooManyOpenFiles

PER_SESSION = 4
"""What a session holds at most: its transcript and the stdin, stdout and stderr pipes of
its agent (a turn-based agent's turn: no stdin; a re-adopted agent: a pidfd instead)."""
DEFAULT_RESERVE = 128
"""Descriptors kept free by default (``fd_reserve``)."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FdLimit:
    """The soft RLIMIT_NOFILE before and after :func:`raise_limit`, and the hard one."""

    soft: int
    hard: int
    was: int


def raise_limit() -> FdLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit: systemd gives a service 1,024 soft
    (room for about 200 sessions) and a far higher hard limit, which is there to be taken.

    Agents inherit the raised limit; they close what they do not own (``close_range``),
    so a high limit costs them nothing.
    """
    was, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = was
    if hard == resource.RLIM_INFINITY or hard > was:
        target = hard if hard != resource.RLIM_INFINITY else _nr_open()
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # a hard limit above the kernel's nr_open
            log.warning("fd_limit_not_raised", soft=was, hard=hard, error=str(exc))
    return FdLimit(soft=soft, hard=hard, was=was)


RECOUNT_AFTER = 1.0
"""Seconds a listing of ``/proc/self/fd`` stands for the descriptors open while far from the
limit (starts since are counted at their worst)."""


def _nr_open() -> int:
    """The most descriptors the kernel lets one process have (``fs.nr_open``)."""
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def open_count() -> int:
    """Descriptors this process has open now (from ``/proc/self/fd``)."""
    try:
        # The listing's own descriptor is among those it lists.
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:  # EMFILE itself: as full as it gets
        return current_limit()


def current_limit() -> int:
    """The soft RLIMIT_NOFILE: what ``open`` fails beyond."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class FdBudget:
    """Refuses a new session that could bring the daemon within ``reserve`` of its limit.

    Two measures, the worse one counts: the descriptors open now, and what the sessions
    could hold at most (``baseline``, the daemon's own descriptors when it began serving,
    plus :data:`PER_SESSION` for each session). The second keeps starts that have not yet
    spawned (they ``await`` in between) and idle turn-based sessions (whose next turn opens
    pipes) from being overlooked.
    """

    def __init__(self, *, limit: int, reserve: int, baseline: int) -> None:
        self.limit = limit
        self.reserve = reserve
        self.baseline = baseline
        self._counted = (-math.inf, 0, 0)
        """When ``/proc/self/fd`` was last listed, what it held, and starts since then."""

    @classmethod
    def measure(cls, reserve: int = DEFAULT_RESERVE) -> FdBudget:
        """A budget from the current limit, the daemon's descriptors now being its own."""
        return cls(limit=current_limit(), reserve=reserve, baseline=open_count())

    def _open_now(self) -> int:
        """Descriptors open now, listed at most every :data:`RECOUNT_AFTER` seconds while far
        from the limit (a listing costs as much as the rest of a start); in between, each
        start is counted as :data:`PER_SESSION` more, which only errs on the safe side."""
        at, counted, starts = self._counted
        estimate = counted + (starts + 1) * PER_SESSION
        fresh = time.monotonic() - at < RECOUNT_AFTER
        if fresh and estimate + PER_SESSION <= self.usable // 2:
            self._counted = (at, counted, starts + 1)
            return estimate
        now = open_count()
        self._counted = (time.monotonic(), now, 0)
        return now

    @property
    def usable(self) -> int:
        """Descriptors sessions may take in all."""
        return self.limit - self.reserve

    @property
    def capacity(self) -> int:
        """How many sessions fit at most."""
        return max(0, (self.usable - self.baseline) // PER_SESSION)

    def check_start(self, sessions: int) -> None:
        """Raise :class:`TooManyOpenFiles` unless one more session fits beside ``sessions``
        (those that hold, or may take, descriptors)."""
        now = self._open_now()
        worst = max(now, self.baseline + sessions * PER_SESSION) + PER_SESSION
        if worst > self.usable:
            raise TooManyOpenFiles(
                f"not enough file descriptors for another session: {now} of {self.limit} "
                f"open, {self.reserve} kept free for connections (about {self.capacity} "
                "sessions fit; raise the hard RLIMIT_NOFILE, e.g. LimitNOFILE= in the unit)"
            )
