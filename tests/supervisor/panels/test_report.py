"""``panel report`` Markdown: every section a reader needs, tables that stay tables whatever
the members wrote, and a discussion bounded for long panels."""

from __future__ import annotations

import re

from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    Insight,
    InsightKind,
    MemberInfo,
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    PanelStatus,
    PanelType,
    ParticipantKind,
    ParticipantRole,
    Position,
    Stance,
    StopReason,
    Vote,
)
from agentplex.protocol.values import Usage
from agentplex.supervisor.panels.analytics import compute
from agentplex.supervisor.panels.report import markdown

T0 = 1_700_000_000.0
MEMBERS = [
    MemberSpec(
        name="PM",
        persona="pm",
        backend="claude",
        model="sonnet",
        role=ParticipantRole.MODERATOR,
        stance=Stance.FOR,
    ),
    MemberSpec(
        name="QA", persona="qa", backend="codex", role=ParticipantRole.CRITIC, stance=Stance.AGAINST
    ),
    MemberSpec(name="Ann", kind=ParticipantKind.HUMAN, role=ParticipantRole.OBSERVER, votes=False),
]
NAMES = [m.name for m in MEMBERS]


def info(topic: str = "Ship the cache on Friday?") -> PanelInfo:
    config = PanelConfig(topic=topic, type=PanelType.DEBATE, members=MEMBERS, moderator="PM")
    return PanelInfo(
        id="pnl-1",
        config=config,
        status=PanelStatus.COMPLETED,
        members=[MemberInfo(spec=spec, session_id=f"s-{spec.name}") for spec in MEMBERS],
        created_at=T0,
        stop_reason=StopReason.MAX_ROUNDS,
    )


def message(n: int, who: str, text: str, **fields: object) -> PanelMessage:
    return PanelMessage(
        id=f"m{n}",
        panel_id="pnl-1",
        participant=who,
        text=text,
        ts=T0 + 10 * n,
        turn=n,
        round=n // 2,
        **fields,  # type: ignore[arg-type]  # PanelMessage's own fields
    )


MESSAGES = [
    message(
        0,
        "PM",
        "We should ship on Friday. @QA?",
        mentions=["QA"],
        usage=Usage(input_tokens=100, output_tokens=40, cost_usd=0.0125),
        latency_ms=900,
    ),
    message(
        1,
        "QA",
        "Not before the load test.\nACTION ITEM: QA runs the load test",
        reply_to="m0",
        usage=Usage(input_tokens=80, output_tokens=30, cost_usd=0.02),
        latency_ms=1500,
    ),
    message(2, "Ann", "What does the load test cover?", reply_to="m1", type=MessageType.QUESTION),
    message(3, "system", "Round 2 begins", type=MessageType.SYSTEM),
    message(4, "PM", "DECISION: ship Monday after the load test", reply_to="m1"),
]
DECISIONS = [
    Decision(
        id="d1",
        panel_id="pnl-1",
        proposal="Ship on Monday after the load test",
        votes=[
            Vote(participant="PM", position=Position.AGREE, reason="safer"),
            Vote(
                participant="QA", position=Position.AGREE_WITH_CONDITIONS, reason="if p99 < 200 ms"
            ),
        ],
        level=ConsensusLevel.UNANIMOUS,
        agreement=1.0,
        action_items=["PM tells support"],
        ts=T0 + 60,
    )
]
INSIGHTS = [
    Insight(
        id="m1-i0",
        panel_id="pnl-1",
        kind=InsightKind.ACTION_ITEM,
        text="QA runs the load test",
        participant="QA",
        message_id="m1",
        ts=T0 + 10,
        responsible="QA",
    ),
    Insight(
        id="m4-i0",
        panel_id="pnl-1",
        kind=InsightKind.DECISION,
        text="ship Monday after the load test",
        participant="PM",
        message_id="m4",
        ts=T0 + 40,
    ),
]


def report(
    panel: PanelInfo | None = None, messages: list[PanelMessage] = MESSAGES, **kwargs: int
) -> str:
    analytics = compute(messages, DECISIONS, INSIGHTS, NAMES)
    return markdown(panel or info(), analytics, messages, DECISIONS, INSIGHTS, **kwargs)


def section(text: str, title: str) -> str:
    """The body of ``## title`` up to the next ``## ``."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert found is not None, f"no section {title!r} in:\n{text}"
    return found.group(1)


def rows(body: str) -> list[list[str]]:
    """The cells of each table row in ``body`` (header and separator included)."""
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for line in body.splitlines()
        if line.startswith("|")
    ]


def test_heading_names_topic_type_status_and_stop_reason() -> None:
    text = report()
    assert text.startswith("# Panel pnl-1: Ship the cache on Friday?\n")
    assert "**Type**: debate" in text
    assert "**Status**: completed (stop reason: max rounds)" in text
    assert "**Moderator**: PM" in text
    assert "2023-11-14 22:13:20 UTC" in text  # created_at, in UTC
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_members_show_role_stance_and_backend() -> None:
    table = rows(section(report(), "Members"))
    assert table[2][:6] == ["PM", "agent", "moderator", "for", "claude (sonnet)", "pm"]
    assert table[3][:5] == ["QA", "agent", "critic", "against", "codex"]
    assert table[4][:5] == ["Ann", "human", "observer", "-", "-"]
    assert table[4][6] == "no"  # Ann does not vote


def test_participation_table_matches_the_analytics() -> None:
    body = section(report(), "Participation")
    table = {row[0]: row for row in rows(body)[2:]}
    assert set(table) == {"PM", "QA", "Ann"}  # the orchestrator is no participant
    assert table["PM"][1:4] == ["2", "13", "42%"]  # of 31 words
    assert table["QA"][4:7] == ["80", "30", "$0.0200"]
    assert table["QA"][7] == "1500 / 1500 / 1500"
    assert table["Ann"][7] == "- / - / -"
    assert "Gini of words" in body


def test_decisions_show_positions_and_consensus_level() -> None:
    body = section(report(), "Decisions")
    assert "### 1. Ship on Monday after the load test" in body
    assert "**unanimous** — agreement 100%" in body
    table = rows(body)
    assert table[2] == ["PM", "agree", "safer"]
    assert table[3] == ["QA", "agree with conditions", "if p99 < 200 ms"]


def test_action_items_come_from_markers_and_decisions_with_their_owner() -> None:
    body = section(report(), "Action items")
    assert "- QA runs the load test — QA (raised by QA)" in body
    assert "- PM tells support (from: Ship on Monday after the load test)" in body


def test_reply_network_is_a_small_matrix_of_who_answered_whom() -> None:
    table = rows(section(report(), "Reply network"))
    assert table[0] == ["replied ↓ / to →", "PM", "QA", "Ann"]
    by_source = {row[0]: row[1:] for row in table[2:]}
    assert by_source == {"QA": ["1", "·", "·"], "Ann": ["·", "1", "·"], "PM": ["·", "1", "·"]}
    mentions = rows(section(report(), "Mentions"))
    assert mentions[2] == ["PM", "·", "1"]


def test_timeline_is_in_time_order_with_offsets() -> None:
    lines = section(report(), "Timeline").strip().splitlines()
    assert lines == [
        "- `+00:10` **action item** (QA): QA runs the load test",
        "- `+00:40` **decision** (PM): ship Monday after the load test",
        "- `+01:00` **decision** (vote): Ship on Monday after the load test",
    ]


def test_totals_state_tokens_cost_and_how_effectiveness_was_made() -> None:
    body = section(report(), "Totals")
    assert "Messages: 4 (and 1 from the orchestrator, 0 interrupted)" in body
    assert "Tokens: 180 in, 70 out · Cost: $0.0325" in body
    assert "1 voted, 1 with consensus (100%)" in body
    assert "Effectiveness: **" in body and "decision rate 1.00" in body


def test_what_members_wrote_cannot_break_a_table_or_the_layout() -> None:
    nasty = "a | b\n## Not a heading\n| c |"
    messages = [
        *MESSAGES,
        PanelMessage(
            id="x", panel_id="pnl-1", participant="QA|x", text=nasty, ts=T0 + 99, turn=9, round=4
        ),
    ]
    text = report(info(topic="pipes | and\nnewlines"), messages)
    assert text.startswith("# Panel pnl-1: pipes \\| and newlines\n")
    for title in ("Members", "Participation", "Decisions", "Reply network"):
        table = rows(section(text, title))
        assert len({len(row) for row in table}) == 1, (title, table)
    assert "> ## Not a heading" in text  # quoted, not a section
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Members",
        "## Participation",
        "## Decisions",
        "## Action items",
        "## Reply network",
        "## Mentions",
        "## Timeline",
        "## Totals",
        "## Discussion",
    ]


def test_the_discussion_shows_each_message_once_and_is_bounded() -> None:
    body = section(report(), "Discussion")
    assert body.count("**PM** (moderator)") == 2
    assert "**Ann** (observer) · round 1 · question · replying to m1" in body
    assert "> Not before the load test.\n> ACTION ITEM: QA runs the load test" in body
    many = [message(n, "PM", f"point {n}") for n in range(50)]
    again = [*many, many[-1]]  # a record written twice shows once
    short = section(report(messages=again, discussion_limit=5), "Discussion")
    assert "The last 5 of 50 messages" in short
    assert "> point 49" in short and "> point 44" not in short
    assert short.count("> point 49") == 1


def test_an_empty_panel_still_reports() -> None:
    text = report(messages=[])
    assert "Nothing was said." in text
    assert "## Reply network" not in text  # no empty matrix
