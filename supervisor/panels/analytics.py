"""Panel analytics: how much each participant said, at what cost and latency, who answered and
named whom, how unequal the participation was, what was decided with what consensus, and the
design seed's effectiveness score.

Everything here is a pure function of a panel's logs (``panel_messages.jsonl``,
``insights/insights.jsonl``, the decision history), so the analytics of a finished panel can be
recomputed from its files and must equal what the orchestrator wrote. ``compute`` reads whole
logs; ``LiveAnalytics`` keeps the same figures as messages arrive (each ``update`` O(1)), and
both end in one ``_finish``, so they agree by construction where it matters and a property
test proves it for the accumulation.

Counting rules, the same on both paths:
- A record whose id was seen before replaces it (a reaction added, a message updated); a
  crash that wrote a message twice therefore never counts it twice.
- A *turn* (messages, words, latency, threads, reply and mention edges) is a record that is
  neither ``SYSTEM`` nor ``interrupted`` (an interrupted reply is asked again and its retry is
  the turn). Usage and reactions count for every record but ``SYSTEM`` ones: the tokens of a
  cut reply were billed all the same. Reactions never count as turns.
- Participants are the members given, then anyone else who spoke, in order of first
  appearance; Gini is over all of them, silent members included.
- Panel time runs from the earliest to the latest record in the log (superseded ones too).
- Cost is summed in whole nano-dollars, so the total is exact and independent of order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    Insight,
    InsightKind,
    MessageType,
    PanelMessage,
)
from agentplex.supervisor.panels._tallies import (
    NANOS_PER_USD,
    Figures,
    Tally,
    for_members,
    speaks,
)

REACHED = frozenset(
    {ConsensusLevel.UNANIMOUS, ConsensusLevel.STRONG_MAJORITY, ConsensusLevel.SIMPLE_MAJORITY}
)
"""The levels that count as consensus reached (``consensus_rate``)."""


class ParticipantStats(msgspec.Struct, frozen=True, kw_only=True):
    """What one participant said and what it cost."""

    name: str
    messages: int = 0
    """Turns taken (SYSTEM records, interrupted replies and reactions excluded)."""
    words: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    reactions_received: int = 0
    latency_mean_ms: float | None = None
    """From the turn handed to its process to its reply; ``None`` for humans."""
    latency_p50_ms: int | None = None
    latency_p90_ms: int | None = None


class Edge(msgspec.Struct, frozen=True, kw_only=True):
    """``source`` replied to (or mentioned) ``target`` ``count`` times."""

    source: str
    target: str
    count: int


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A point in the topic timeline: a captured marker or a recorded decision."""

    ts: float
    kind: InsightKind
    text: str
    participant: str | None = None
    """Who said it (``None`` for a decision the panel voted on)."""
    ref: str
    """The insight's or the decision's id."""


class PanelAnalytics(msgspec.Struct, frozen=True, kw_only=True):
    """A panel's analytics (``analytics/final_analytics.json`` when it ends)."""

    panel_id: str | None = None
    participants: list[ParticipantStats] = []
    messages: int = 0
    words: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    system_messages: int = 0
    interrupted: int = 0
    reactions: dict[str, int] = {}
    """Emoji → how many times it was used."""
    threads: int = 0
    rounds: int = 0
    """The highest round a member spoke in, plus one."""
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float = 0.0
    gini: float = 0.0
    """Participation inequality of word counts: 0 all equal, → 1 one speaks alone."""
    reply_network: list[Edge] = []
    mention_network: list[Edge] = []
    timeline: list[TimelineEntry] = []
    insights: dict[str, int] = {}
    """Captured markers per kind (``decision`` here counts ``DECISION:`` markers)."""
    decisions: int = 0
    """Decisions the panel voted on (``panel decide``)."""
    consensus_reached: int = 0
    consensus_rate: float = 0.0
    decision_rate: float = 0.0
    """Voted decisions per hour of panel time, a panel shorter than an hour counting as one
    hour (the seed's ``max(1, hours)``), capped at 1 so decisions alone cannot make up for
    missing consensus and balance."""
    effectiveness: float = 0.0
    """The seed's score: ``0.4·decision_rate + 0.3·consensus_rate + 0.3·(1 - gini)``, ≤ 1."""


def gini(values: Sequence[int | float]) -> float:
    """The Gini coefficient ``Σ|xi - xj| / (2·n²·mean)``; 0 for no values or all zero.

    Computed from the sorted values as ``Σ (2i - n - 1)·x(i) / (n·Σx)`` (the same sum, in
    O(n log n)); with integers the numerator is exact, so [400, 0, 0, 0] gives exactly 0.75."""
    n = len(values)
    total = sum(values)
    if n == 0 or total <= 0:
        return 0.0
    ordered = sorted(values)
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(ordered, start=1))
    return float(weighted / (n * total))


def percentile(ordered: Sequence[int], q: float) -> int:
    """The nearest-rank ``q`` quantile (0 < q ≤ 1) of values already sorted."""
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def encode(analytics: PanelAnalytics) -> bytes:
    return msgspec.json.encode(analytics)


def decode(data: bytes) -> PanelAnalytics:
    return msgspec.json.decode(data, type=PanelAnalytics)


# --------------------------------------------------------------------------- results


def _person(name: str, tally: Tally) -> ParticipantStats:
    lat = tally.latencies
    return ParticipantStats(
        name=name,
        messages=tally.messages,
        words=tally.words,
        input_tokens=tally.input_tokens,
        output_tokens=tally.output_tokens,
        cost_usd=tally.cost_nanos / NANOS_PER_USD,
        reactions_received=tally.reactions_received,
        latency_mean_ms=sum(lat) / len(lat) if lat else None,
        latency_p50_ms=percentile(lat, 0.5) if lat else None,
        latency_p90_ms=percentile(lat, 0.9) if lat else None,
    )


def compute(
    messages: Iterable[PanelMessage],
    decisions: Iterable[Decision],
    insights: Iterable[Insight],
    members: Sequence[str],
) -> PanelAnalytics:
    """The analytics of a panel from its logs: the message log, its decisions, its captured
    insights and its member names."""
    figures = for_members(members)
    latest: dict[str, PanelMessage] = {}
    for message in messages:
        figures.see(message)
        latest[message.id] = message
    for message in latest.values():
        figures.count(message, 1)
        target = latest.get(message.reply_to) if message.reply_to is not None else None
        if speaks(message) and target is not None and target.type is not MessageType.SYSTEM:
            figures.replies[(message.participant, target.participant)] += 1
    figures.insights = {insight.id: insight for insight in insights}
    figures.decisions = {decision.id: decision for decision in decisions}
    return _finish(figures)


def _edges(counter: Counter[tuple[str, str]]) -> list[Edge]:
    return [
        Edge(source=source, target=target, count=count)
        for (source, target), count in sorted(counter.items())
        if count > 0
    ]


def _timeline(figures: Figures) -> list[TimelineEntry]:
    entries = [
        TimelineEntry(ts=i.ts, kind=i.kind, text=i.text, participant=i.participant, ref=i.id)
        for i in figures.insights.values()
    ]
    entries += [
        TimelineEntry(ts=d.ts, kind=InsightKind.DECISION, text=d.proposal, ref=d.id)
        for d in figures.decisions.values()
    ]
    return sorted(entries, key=lambda entry: (entry.ts, entry.ref))


def _finish(figures: Figures) -> PanelAnalytics:
    people = [_person(name, figures.tallies[name]) for name in figures.order]
    span = (figures.last_ts or 0.0) - (figures.first_ts or 0.0)
    kinds = Counter(insight.kind for insight in figures.insights.values())
    said = PanelAnalytics(
        panel_id=figures.panel_id,
        participants=people,
        messages=sum(person.messages for person in people),
        words=sum(person.words for person in people),
        input_tokens=sum(person.input_tokens for person in people),
        output_tokens=sum(person.output_tokens for person in people),
        cost_usd=sum(t.cost_nanos for t in figures.tallies.values()) / NANOS_PER_USD,
        system_messages=figures.system_messages,
        interrupted=figures.interrupted,
        reactions={emoji: n for emoji, n in sorted(figures.reactions.items()) if n > 0},
        threads=sum(1 for n in figures.threads.values() if n > 0),
        rounds=figures.rounds,
        started_at=figures.first_ts,
        ended_at=figures.last_ts,
        duration_s=span,
        gini=gini([person.words for person in people]),
        reply_network=_edges(figures.replies),
        mention_network=_edges(figures.mentions),
        timeline=_timeline(figures),
        insights={kind.value: kinds[kind] for kind in InsightKind},
    )
    return _scored(said, figures.decisions.values())


def _scored(said: PanelAnalytics, decisions: Iterable[Decision]) -> PanelAnalytics:
    """``said`` with the decision figures and the effectiveness score added."""
    levels = [decision.level for decision in decisions]
    reached = sum(level in REACHED for level in levels)
    consensus_rate = reached / len(levels) if levels else 0.0
    decision_rate = min(1.0, len(levels) / max(1.0, said.duration_s / 3600))
    score = 0.4 * decision_rate + 0.3 * consensus_rate + 0.3 * (1.0 - said.gini)
    return msgspec.structs.replace(
        said,
        decisions=len(levels),
        consensus_reached=reached,
        consensus_rate=consensus_rate,
        decision_rate=decision_rate,
        effectiveness=min(1.0, score),
    )


class LiveAnalytics:
    """The same figures as ``compute``, kept as the panel runs: ``update`` each message record
    as it is appended (O(1) apart from keeping a member's latencies sorted), ``add_insight``
    and ``add_decision`` likewise, and ``snapshot`` whenever the analytics are asked for."""

    def __init__(self, members: Sequence[str]) -> None:
        self._figures = for_members(members)
        self._latest: dict[str, PanelMessage] = {}
        self._incoming: dict[str, Counter[str]] = {}
        """Message id → who replied to it, how often (the target may not have arrived)."""

    def update(self, message: PanelMessage) -> None:
        figures = self._figures
        figures.see(message)
        old = self._latest.get(message.id)
        if old is not None:
            self._link(old, -1)
            self._retarget(old, -1)
            figures.count(old, -1)
        self._latest[message.id] = message
        figures.count(message, 1)
        self._retarget(message, 1)
        self._link(message, 1)

    def add_insight(self, insight: Insight) -> None:
        self._figures.insights[insight.id] = insight

    def add_decision(self, decision: Decision) -> None:
        self._figures.decisions[decision.id] = decision

    def snapshot(self) -> PanelAnalytics:
        return _finish(self._figures)

    def _link(self, message: PanelMessage, sign: int) -> None:
        """The reply edge from ``message`` to the message it answers."""
        if message.reply_to is None or not speaks(message):
            return
        incoming = self._incoming.setdefault(message.reply_to, Counter())
        incoming[message.participant] += sign
        target = self._latest.get(message.reply_to)
        if target is not None and target.type is not MessageType.SYSTEM:
            self._figures.replies[(message.participant, target.participant)] += sign

    def _retarget(self, message: PanelMessage, sign: int) -> None:
        """The reply edges into ``message`` from replies that arrived before it did (or
        before this record of it replaced the last)."""
        if message.type is MessageType.SYSTEM:
            return
        for source, count in self._incoming.get(message.id, Counter()).items():
            self._figures.replies[(source, message.participant)] += sign * count
