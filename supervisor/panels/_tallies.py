"""The running figures behind panel analytics (``analytics.py``): per-participant tallies
and the panel-wide counters, each record added or taken back exactly, so the whole-log and
the live paths gather the same figures.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentplex.protocol.panels import Decision, Insight, MessageType, PanelMessage

NANOS_PER_USD = 1_000_000_000
"""Cost is summed in whole nano-dollars: exact, and the same in any order."""


def speaks(message: PanelMessage) -> bool:
    return message.type is not MessageType.SYSTEM and not message.interrupted


def nanos(cost: float) -> int:
    return round(cost * NANOS_PER_USD) if math.isfinite(cost) else 0


@dataclass
class Tally:
    """One participant's running figures; ``apply`` adds (sign 1) or retracts (sign -1) a
    record, so a replaced record can be taken back exactly."""

    messages: int = 0
    words: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    reactions_received: int = 0
    latencies: list[int] = field(default_factory=list)
    """Kept sorted."""

    def apply(self, message: PanelMessage, sign: int) -> None:
        if message.type is MessageType.SYSTEM:
            return
        if message.usage is not None:
            self.input_tokens += sign * message.usage.input_tokens
            self.output_tokens += sign * message.usage.output_tokens
            self.cost_nanos += sign * nanos(message.usage.cost_usd)
        self.reactions_received += sign * len(message.reactions)
        if not speaks(message):
            return
        self.messages += sign
        self.words += sign * len(message.text.split())
        if message.latency_ms is not None:
            if sign > 0:
                bisect.insort(self.latencies, message.latency_ms)
            else:
                del self.latencies[bisect.bisect_left(self.latencies, message.latency_ms)]


@dataclass
class Figures:
    """Everything the analytics are made of, however it was gathered (whole logs or one
    record at a time)."""

    panel_id: str | None = None
    order: dict[str, None] = field(default_factory=dict)
    """Participants in order (a dict as an ordered set)."""
    tallies: dict[str, Tally] = field(default_factory=dict)
    replies: Counter[tuple[str, str]] = field(default_factory=Counter)
    mentions: Counter[tuple[str, str]] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    reactions: Counter[str] = field(default_factory=Counter)
    system_messages: int = 0
    interrupted: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    rounds: int = 0
    insights: dict[str, Insight] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)

    def tally(self, name: str) -> Tally:
        found = self.tallies.get(name)
        if found is None:
            found = self.tallies[name] = Tally()
            self.order[name] = None
        return found

    def see(self, message: PanelMessage) -> None:
        """What every record adds, superseded or not: the panel's span, its speakers and
        rounds."""
        if self.panel_id is None:
            self.panel_id = message.panel_id
        ts = message.ts
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if message.type is not MessageType.SYSTEM:
            self.tally(message.participant)
            self.rounds = max(self.rounds, message.round + 1)

    def count(self, message: PanelMessage, sign: int) -> None:
        """What the current record of an id adds (sign 1) or takes back (sign -1), except
        reply edges, which depend on other records."""
        if message.type is MessageType.SYSTEM:
            self.system_messages += sign
            return
        self.tally(message.participant).apply(message, sign)
        self.interrupted += sign * message.interrupted
        for reaction in message.reactions:
            self.reactions[reaction.emoji] += sign
        if not speaks(message):
            return
        for name in dict.fromkeys(message.mentions):
            self.mentions[(message.participant, name)] += sign
        if message.thread_id is not None:
            self.threads[message.thread_id] += sign


def for_members(members: Sequence[str]) -> Figures:
    figures = Figures()
    for name in members:
        figures.tally(name)
    return figures
