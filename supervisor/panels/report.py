"""A panel as a readable Markdown report (``panel report ID``): what it was about, who took
part, how much each said, what was decided and with what consensus, who answered whom, the
timeline of insights and decisions, the totals, and the discussion itself.

Pure: it formats what it is given (the panel's info, its analytics and its logs) and reads
nothing else, so a report of a finished panel can be made again from its files.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from agentplex.protocol.panels import (
    Decision,
    Insight,
    InsightKind,
    MemberInfo,
    MessageType,
    PanelInfo,
    PanelMessage,
    ParticipantKind,
)
from agentplex.supervisor.panels.analytics import Edge, PanelAnalytics

DISCUSSION_LIMIT = 200
"""The report shows at most this many messages (the latest); the log has them all."""
MESSAGE_CHARS = 2_000
"""A message longer than this is cut in the report (never in the log)."""
CELL_CHARS = 160


def markdown(
    info: PanelInfo,
    analytics: PanelAnalytics,
    messages: Sequence[PanelMessage],
    decisions: Sequence[Decision],
    insights: Sequence[Insight],
    *,
    discussion_limit: int = DISCUSSION_LIMIT,
) -> str:
    """The whole report, sections in reading order, ending with one newline."""
    sections = [
        _heading(info, analytics),
        _members(info),
        _participation(analytics),
        _decisions(decisions),
        _action_items(decisions, insights),
        _network("Reply network", "replied", analytics.reply_network, analytics),
        _network("Mentions", "mentioned", analytics.mention_network, analytics),
        _timeline(analytics),
        _totals(analytics),
        _discussion(info, messages, discussion_limit),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


# --------------------------------------------------------------------------- formatting


def cell(text: str, limit: int = CELL_CHARS) -> str:
    """``text`` made safe for one table cell: one line, pipes escaped, cut to ``limit``."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _when(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _offset(seconds: float) -> str:
    """``+mm:ss`` (or ``+h:mm:ss``) into the panel."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{secs:02d}" if hours else f"+{minutes:02d}:{secs:02d}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _usd(value: float) -> str:
    return f"${value:.4f}"


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _label(value: object) -> str:
    """An enum value as words: ``strong_majority`` → ``strong majority``."""
    return str(value).replace("_", " ")


# --------------------------------------------------------------------------- sections


def _heading(info: PanelInfo, analytics: PanelAnalytics) -> str:
    config = info.config
    status = _label(info.status)
    if info.stop_reason is not None:
        status += f" (stop reason: {_label(info.stop_reason)})"
    policy = _label(config.speaker_policy) if config.speaker_policy else "the type's default"
    lines = [
        f"# Panel {info.id}: {cell(config.topic, 200)}",
        "",
        f"- **Topic**: {cell(config.topic, 1000)}",
        f"- **Type**: {_label(config.type)} · **Shape**: {_label(config.shape)} · "
        f"**Speakers**: {policy}",
        f"- **Status**: {status}",
        f"- **Created**: {_when(info.created_at)} · **Duration**: "
        f"{_duration(analytics.duration_s)} · **Rounds**: {analytics.rounds} · "
        f"**Messages**: {analytics.messages}",
    ]
    if config.moderator:
        lines.append(f"- **Moderator**: {cell(config.moderator)}")
    if config.tag:
        lines.append(f"- **Tag**: {cell(config.tag)}")
    return "\n".join(lines)


def _backend(member: MemberInfo) -> str:
    spec = member.spec
    if spec.backend is None:
        return "-" if spec.kind is ParticipantKind.HUMAN else "default"
    return f"{spec.backend} ({spec.model})" if spec.model else spec.backend


def _members(info: PanelInfo) -> str:
    rows = [
        [
            cell(m.spec.name),
            _label(m.spec.kind),
            _label(m.spec.role),
            _label(m.spec.stance) if m.spec.stance else "-",
            cell(_backend(m)),
            cell(m.spec.persona or "-"),
            "yes" if m.spec.votes else "no",
            "active" if m.active else "left",
        ]
        for m in info.members
    ]
    head = ["Member", "Kind", "Role", "Stance", "Backend", "Persona", "Votes", "State"]
    return "## Members\n\n" + _table(head, rows)


def _participation(analytics: PanelAnalytics) -> str:
    words = analytics.words or 1
    rows = [
        [
            cell(p.name),
            str(p.messages),
            str(p.words),
            _percent(p.words / words),
            str(p.input_tokens),
            str(p.output_tokens),
            _usd(p.cost_usd),
            f"{_ms(p.latency_mean_ms)} / {_ms(p.latency_p50_ms)} / {_ms(p.latency_p90_ms)}",
            str(p.reactions_received),
        ]
        for p in analytics.participants
    ]
    head = [
        "Member",
        "Messages",
        "Words",
        "Share",
        "Tokens in",
        "Tokens out",
        "Cost",
        "Latency ms mean / p50 / p90",
        "Reactions",
    ]
    gini = (
        f"Participation inequality (Gini of words, silent members included): "
        f"**{analytics.gini:.2f}** (0 = everyone said as much, 1 = one member said everything)."
    )
    return "## Participation\n\n" + _table(head, rows) + "\n\n" + gini


def _decision(number: int, decision: Decision) -> str:
    lines = [
        f"### {number}. {cell(decision.proposal, 300)}",
        "",
        f"**{_label(decision.level)}** — agreement {_percent(decision.agreement)} of the "
        f"counted positions, {len(decision.votes)} voted, {_when(decision.ts)}",
    ]
    if decision.votes:
        rows = [
            [cell(vote.participant), _label(vote.position), cell(vote.reason or "-")]
            for vote in decision.votes
        ]
        lines += ["", _table(["Member", "Position", "Reason"], rows)]
    return "\n".join(lines)


def _decisions(decisions: Sequence[Decision]) -> str:
    if not decisions:
        return "## Decisions\n\nNo proposal was put to a vote."
    ordered = sorted(decisions, key=lambda d: (d.ts, d.id))
    parts = [_decision(n, d) for n, d in enumerate(ordered, start=1)]
    return "## Decisions\n\n" + "\n\n".join(parts)


def _action_items(decisions: Sequence[Decision], insights: Sequence[Insight]) -> str:
    items = [
        f"- {cell(i.text, 500)} — {cell(i.responsible or 'unassigned')} "
        f"(raised by {cell(i.participant)})"
        for i in sorted(insights, key=lambda i: (i.ts, i.id))
        if i.kind is InsightKind.ACTION_ITEM
    ]
    for d in sorted(decisions, key=lambda d: (d.ts, d.id)):
        items += [f"- {cell(text, 500)} (from: {cell(d.proposal, 80)})" for text in d.action_items]
    if not items:
        return ""
    return "## Action items\n\n" + "\n".join(items)


def _network(title: str, verb: str, edges: Sequence[Edge], analytics: PanelAnalytics) -> str:
    """A small matrix: one row per member who did it, one column per member it was done to."""
    if not edges:
        return ""
    known = [p.name for p in analytics.participants]
    involved = {e.source for e in edges} | {e.target for e in edges}
    names = [n for n in known if n in involved] + sorted(involved - set(known))
    counts = {(e.source, e.target): e.count for e in edges}
    rows = [
        [cell(source), *(str(counts.get((source, target), "·")) for target in names)]
        for source in names
        if any((source, target) in counts for target in names)
    ]
    head = [f"{verb} ↓ / to →", *(cell(n) for n in names)]
    return f"## {title}\n\n" + _table(head, rows)


def _timeline(analytics: PanelAnalytics) -> str:
    if not analytics.timeline:
        return ""
    start = analytics.started_at
    lines = []
    for entry in analytics.timeline:
        when = _offset(entry.ts - start) if start is not None else _when(entry.ts)
        who = f" ({cell(entry.participant)})" if entry.participant else " (vote)"
        lines.append(f"- `{when}` **{_label(entry.kind)}**{who}: {cell(entry.text, 300)}")
    return "## Timeline\n\n" + "\n".join(lines)


def _totals(analytics: PanelAnalytics) -> str:
    reactions = sum(analytics.reactions.values())
    lines = [
        f"- Messages: {analytics.messages} (and {analytics.system_messages} from the "
        f"orchestrator, {analytics.interrupted} interrupted)",
        f"- Words: {analytics.words} · Threads: {analytics.threads} · Reactions: {reactions}",
        f"- Tokens: {analytics.input_tokens} in, {analytics.output_tokens} out · Cost: "
        f"{_usd(analytics.cost_usd)}",
        f"- Decisions: {analytics.decisions} voted, {analytics.consensus_reached} with "
        f"consensus ({_percent(analytics.consensus_rate)}); markers: "
        + ", ".join(f"{n} {_label(kind)}" for kind, n in analytics.insights.items()),
        f"- Effectiveness: **{analytics.effectiveness:.2f}** = 0.4 · decision rate "
        f"{analytics.decision_rate:.2f} (voted decisions per hour, at least an hour, ≤ 1) "
        f"+ 0.3 · consensus rate {analytics.consensus_rate:.2f} + 0.3 · (1 - Gini "
        f"{analytics.gini:.2f}), at most 1",
    ]
    return "## Totals\n\n" + "\n".join(lines)


def _quote(text: str) -> str:
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS] + "… (cut; the full text is in the log)"
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""])


def _discussion(info: PanelInfo, messages: Sequence[PanelMessage], limit: int) -> str:
    latest = list({m.id: m for m in messages}.values())
    if not latest:
        return "## Discussion\n\nNothing was said."
    roles = {m.spec.name: _label(m.spec.role) for m in info.members}
    shown = latest[-limit:] if limit > 0 else []
    parts = ["## Discussion"]
    if len(shown) < len(latest):
        parts.append(f"The last {len(shown)} of {len(latest)} messages (the log has them all).")
    for m in shown:
        role = f" ({roles[m.participant]})" if m.participant in roles else ""
        line = [f"**{cell(m.participant)}**{role}", f"round {m.round}"]
        line += [] if m.type is MessageType.CONVERSATION else [_label(m.type)]
        line += [f"replying to {cell(m.reply_to)}"] if m.reply_to else []
        line += ["interrupted"] if m.interrupted else []
        parts.append(" · ".join(line) + "\n\n" + _quote(m.text))
    return "\n\n".join(parts)
