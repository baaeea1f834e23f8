"""Wall-clock stops noticed on time: a ``time=`` condition is checked at the moment it
becomes met, not at the end of the turn in flight (a slow member would make a ``time=2s``
panel run as long as its reply takes)."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from agentplex.protocol.panels import StopReason
from agentplex.supervisor.panels.termination import Condition, Progress


async def stop_on_time(
    condition: Condition,
    progress: Callable[[], Progress],
    started_at: float,
    stop: Callable[[StopReason], None],
) -> None:
    """At each ``time=`` deadline (``started_at`` is wall-clock, as the panel records it)
    check ``condition``; call ``stop`` with the reason and return once one holds. Progress
    given here must carry no fresh messages: the loop reads those (and latches markers)."""
    for at in condition.deadlines():
        delay = started_at + at - time.time()
        if delay > 0:
            await anyio.sleep(delay)
        reason = condition.check(progress())
        if reason is not None:
            stop(reason)
            return
