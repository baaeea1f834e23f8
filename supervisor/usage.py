"""Token and cost figures from agents, checked where the daemon takes them in.

An agent's output is untrusted, and so is a third-party driver. A figure that is not a
finite, non-negative number within its bound (a cost of 1e308, a NaN, negative or
fractional tokens) is dropped from the turn's usage with a logged warning. Session totals
saturate at the same bounds: a sum never becomes infinite, which JSON cannot carry (msgspec
writes it as ``null``, and from then on no client could decode the session).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec
import structlog

from agentplex.protocol import Usage

log = structlog.get_logger(__name__)

MAX_COUNT: Final = 2**53 - 1
"""Bound of token counts and ``duration_ms``: the largest integer every JSON reader (a
JavaScript one too) keeps exact."""
MAX_COST_USD: Final = 1e12
"""Bound of a cost in USD: far above any real bill, far below overflow."""

_COUNTS: Final = ("input_tokens", "output_tokens", "cached_tokens")
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


def _is_count(value: object) -> bool:
    # type() and not isinstance(): a bool is an int, and not a count
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_cost(value: object) -> bool:
    if type(value) is int:
        return 0 <= value <= MAX_COST_USD
    return type(value) is float and math.isfinite(value) and 0.0 <= value <= MAX_COST_USD
