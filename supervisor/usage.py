"""Token and cost figures from agents, checked where the daemon takes them in, and
turned into each turn's own figures before they are totalled.

An agent's output is untrusted, and so is a third-party driver. A figure that is not a
finite, non-negative number within its bound (a cost of 1e308, a NaN, negative or
fractional tokens) is dropped from the turn's usage with a logged warning. Session totals
saturate at the same bounds: a sum never becomes infinite, which JSON cannot carry (msgspec
writes it as ``null``, and from then on no client could decode the session).

CLIs differ in what a figure counts (``Usage.scope``): Claude's long-lived process reports
the process's running cost, Codex's ``exec resume`` the thread's running tokens. A
:class:`UsageMeter` keeps the last running figure seen for the process and for the CLI's
thread and counts only what was added since, so totals add each turn once and a result
chunk carries its turn's figures. The thread's last figure outlives the process (a turn
in turn mode is a process) and the daemon (it is kept in the session table).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec
import structlog

from agentplex.protocol import Usage, UsageScope

log = structlog.get_logger(__name__)

MAX_COUNT: Final = 2**53 - 1
"""Bound of token counts and ``duration_ms``: the largest integer every JSON reader (a
JavaScript one too) keeps exact."""
MAX_COST_USD: Final = 1e12
"""Bound of a cost in USD: far above any real bill, far below overflow."""

_COUNTS: Final = ("input_tokens", "output_tokens", "cached_tokens")
_RUNNING: Final = (*_COUNTS, "cost_usd")
"""The figures a running total reports (``duration_ms`` is always the turn's)."""
_DROPPED: Final[dict[str, object]] = {
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "cost_usd": 0.0,
    "duration_ms": None,
}


def checked(usage: Usage, *, session_id: str, backend: str) -> Usage:
    """``usage`` with every figure out of bounds dropped (0; None for the duration)."""
    dropped = [name for name in _COUNTS if not _is_count(getattr(usage, name))]
    if not _is_cost(usage.cost_usd):
        dropped.append("cost_usd")
    if usage.duration_ms is not None and not _is_count(usage.duration_ms):
        dropped.append("duration_ms")
    if not dropped and type(usage.cost_usd) is float:
        return usage
    if dropped:
        figures = {name: repr(getattr(usage, name)) for name in dropped}
        log.warning("usage_figures_dropped", session_id=session_id, backend=backend, **figures)
    fixes: dict[str, Any] = {name: _DROPPED[name] for name in dropped}
    if "cost_usd" not in dropped:
        fixes["cost_usd"] = float(usage.cost_usd)  # an int from a plugin: keep it a float
    return msgspec.structs.replace(usage, **fixes)


def add(total: Usage, turn: Usage) -> Usage:
    """Session totals plus one turn's checked figures, each saturating at its bound."""
    return msgspec.structs.replace(
        total,
        input_tokens=min(total.input_tokens + turn.input_tokens, MAX_COUNT),
        output_tokens=min(total.output_tokens + turn.output_tokens, MAX_COUNT),
        cached_tokens=min(total.cached_tokens + turn.cached_tokens, MAX_COUNT),
        cost_usd=min(total.cost_usd + turn.cost_usd, MAX_COST_USD),
    )


class ThreadMark(msgspec.Struct, frozen=True, kw_only=True):
    """The last running figure a CLI reported for its conversation (thread)."""

    thread_id: str | None
    usage: Usage


class UsageMeter:
    """A session's usage: the total of its turns' own figures, and the running figures
    that process- and thread-scoped reports are counted from."""

    def __init__(self) -> None:
        self.total = Usage()
        self.thread: ThreadMark | None = None
        self._process = Usage()

    def new_process(self) -> None:
        """An agent process started: its running figures begin at zero."""
        self._process = Usage()

    def turn_figures(self, usage: Usage, thread_id: str | None) -> Usage:
        """The turn's own share of a checked ``usage`` (scope ``turn``), remembering a
        running figure as the base of the next one."""
        match usage.scope:
            case UsageScope.TURN:
                return usage
            case UsageScope.PROCESS:
                turn, self._process = since(self._process, usage)
            case UsageScope.THREAD:
                mark = self.thread
                base = mark.usage if mark and mark.thread_id == thread_id else Usage()
                turn, high = since(base, usage)
                self.thread = ThreadMark(thread_id=thread_id, usage=high)
        return turn

    def count(self, turn: Usage) -> None:
        """Add one turn's own figures to the total."""
        self.total = add(self.total, turn)


def since(base: Usage, running: Usage) -> tuple[Usage, Usage]:
    """What a running figure added since ``base`` (scope ``turn``), and the next base.

    A running figure only grows. One below its base is not news (a figure the CLI left
    out, or one dropped as out of bounds): it adds nothing and the base stays, so nothing is
    ever counted twice. A new process or thread starts from a zero base instead."""
    deltas: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for name in _RUNNING:
        now, before = getattr(running, name), getattr(base, name)
        deltas[name], highs[name] = max(now - before, 0), max(now, before)
    deltas["cost_usd"] = float(round(deltas["cost_usd"], 12))  # no float noise of a difference
    turn = msgspec.structs.replace(running, scope=UsageScope.TURN, **deltas)
    return turn, msgspec.structs.replace(running, **highs)


def _is_count(value: object) -> bool:
    # type() and not isinstance(): a bool is an int, and not a count
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_cost(value: object) -> bool:
    if type(value) is int:
        return 0 <= value <= MAX_COST_USD
    return type(value) is float and math.isfinite(value) and 0.0 <= value <= MAX_COST_USD
