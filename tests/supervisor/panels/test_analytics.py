"""Panel analytics are a pure function of the panel's logs: per-participant figures, Gini,
the reply and mention networks, the timeline, consensus and effectiveness; the live
accumulator always agrees with recomputing from the log."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    Insight,
    InsightKind,
    MessageType,
    PanelMessage,
    Position,
    Reaction,
    Vote,
)
from agentplex.protocol.values import Usage
from agentplex.supervisor.panels.analytics import (
    Edge,
    LiveAnalytics,
    PanelAnalytics,
    compute,
    decode,
    encode,
    gini,
)

MEMBERS = ["PM", "QA", "Dev", "Human"]
_ids = itertools.count()


def msg(
    participant: str,
    text: str = "one two three",
    *,
    id: str | None = None,
    ts: float = 1000.0,
    round: int = 0,
    **fields: object,
) -> PanelMessage:
    return PanelMessage(
        id=id or f"m{next(_ids)}",
        panel_id="p1",
        participant=participant,
        text=text,
        ts=ts,
        turn=0,
        round=round,
        **fields,  # type: ignore[arg-type]  # the tests pass PanelMessage's own fields
    )


def decision(id: str, level: ConsensusLevel, ts: float = 1000.0) -> Decision:
    votes = [Vote(participant="PM", position=Position.AGREE, reason="fine")]
    return Decision(
        id=id,
        panel_id="p1",
        proposal=f"proposal {id}",
        votes=votes,
        level=level,
        agreement=1.0,
        ts=ts,
    )


def insight(id: str, kind: InsightKind, ts: float, text: str = "x") -> Insight:
    return Insight(
        id=id, panel_id="p1", kind=kind, text=text, participant="PM", message_id="m", ts=ts
    )


def stats(analytics: PanelAnalytics, name: str) -> dict[str, object]:
    person = next(p for p in analytics.participants if p.name == name)
    return msgspec.structs.asdict(person)


def brute_gini(values: Sequence[float]) -> float:
    n, total = len(values), sum(values)
    if n == 0 or total == 0:
        return 0.0
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * (total / n))


# --------------------------------------------------------------------------- gini


def test_gini_is_exactly_zero_for_equal_and_three_quarters_for_one_of_four() -> None:
    assert gini([100, 100, 100, 100]) == 0.0
    assert gini([400, 0, 0, 0]) == 0.75
    assert gini([0, 0, 400, 0]) == 0.75
    assert gini([]) == 0.0
    assert gini([0, 0, 0]) == 0.0
    assert gini([7]) == 0.0


@given(st.lists(st.integers(0, 10_000), max_size=12))
def test_gini_equals_the_mean_absolute_difference_formula(values: list[int]) -> None:
    assert gini(values) == pytest.approx(brute_gini(values), abs=1e-12)
    assert 0.0 <= gini(values) < 1.0


def test_gini_counts_silent_members_as_zero() -> None:
    four_hundred = " ".join(["w"] * 400)
    analytics = compute([msg("PM", four_hundred)], [], [], ["PM", "QA", "Dev", "Human"])
    assert [p.words for p in analytics.participants] == [400, 0, 0, 0]
    assert analytics.gini == 0.75
    hundred = " ".join(["w"] * 100)
    even = compute([msg(name, hundred) for name in MEMBERS], [], [], MEMBERS)
    assert even.gini == 0.0


# --------------------------------------------------------------------------- participants


def test_per_participant_messages_words_tokens_cost_and_latency() -> None:
    messages = [
        msg(
            "PM",
            "a b c",
            usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.1),
            latency_ms=100,
        ),
        msg(
            "PM", "d e", usage=Usage(input_tokens=20, output_tokens=7, cost_usd=0.2), latency_ms=300
        ),
        msg("PM", "f", latency_ms=200),
        msg(
            "QA",
            "g h i j",
            usage=Usage(input_tokens=1, output_tokens=2, cost_usd=0.05),
            latency_ms=50,
        ),
        msg("Human", "hello there"),
    ]
    analytics = compute(messages, [], [], MEMBERS)
    assert [p.name for p in analytics.participants] == MEMBERS
    assert stats(analytics, "PM") == {
        "name": "PM",
        "messages": 3,
        "words": 6,
        "input_tokens": 30,
        "output_tokens": 12,
        "cost_usd": 0.3,
        "reactions_received": 0,
        "latency_mean_ms": 200.0,
        "latency_p50_ms": 200,
        "latency_p90_ms": 300,
    }
    assert stats(analytics, "Human")["latency_mean_ms"] is None
    assert stats(analytics, "Dev")["messages"] == 0
    assert (analytics.messages, analytics.words) == (5, 12)
    assert (analytics.input_tokens, analytics.output_tokens) == (31, 14)
    assert analytics.cost_usd == 0.35


def test_latency_percentiles_are_nearest_rank() -> None:
    messages = [msg("PM", latency_ms=ms) for ms in range(10, 101, 10)]
    person = stats(compute(messages, [], [], ["PM"]), "PM")
    assert (person["latency_p50_ms"], person["latency_p90_ms"]) == (50, 90)
    assert person["latency_mean_ms"] == 55.0


def test_system_messages_and_reactions_never_count_as_turns() -> None:
    reacted = msg(
        "PM",
        "a b",
        reactions=[
            Reaction(participant="QA", emoji="👍", ts=1.0),
            Reaction(participant="Human", emoji="👍", ts=2.0),
            Reaction(participant="Dev", emoji="🎉", ts=3.0),
        ],
    )
    system = msg("system", "QA failed; round robin instead", type=MessageType.SYSTEM)
    analytics = compute([reacted, system], [], [], MEMBERS)
    assert analytics.messages == 1
    assert analytics.system_messages == 1
    assert stats(analytics, "PM")["reactions_received"] == 3
    assert stats(analytics, "QA")["messages"] == 0
    assert analytics.reactions == {"🎉": 1, "👍": 2}
    assert [p.name for p in analytics.participants] == MEMBERS  # "system" is no participant


def test_an_interrupted_reply_is_no_turn_but_its_tokens_were_billed() -> None:
    cut = msg(
        "QA",
        "half a rep",
        interrupted=True,
        latency_ms=9,
        usage=Usage(input_tokens=100, output_tokens=3, cost_usd=0.01),
    )
    retry = msg(
        "QA",
        "the whole reply",
        latency_ms=20,
        usage=Usage(input_tokens=100, output_tokens=9, cost_usd=0.02),
    )
    analytics = compute([cut, retry], [], [], ["QA"])
    person = stats(analytics, "QA")
    assert (person["messages"], person["words"], person["latency_p90_ms"]) == (1, 3, 20)
    assert (person["input_tokens"], person["output_tokens"]) == (200, 12)
    assert person["cost_usd"] == 0.03
    assert analytics.interrupted == 1


def test_a_record_written_twice_counts_once_and_the_later_one_wins() -> None:
    first = msg("PM", "a b c", id="dup", usage=Usage(output_tokens=5, cost_usd=0.5))
    again = msg(
        "PM",
        "a b c",
        id="dup",
        usage=Usage(output_tokens=5, cost_usd=0.5),
        reactions=[Reaction(participant="QA", emoji="👍", ts=2.0)],
    )
    analytics = compute([first, again], [], [], ["PM", "QA"])
    assert (analytics.messages, analytics.words, analytics.output_tokens) == (1, 3, 5)
    assert analytics.cost_usd == 0.5
    assert analytics.reactions == {"👍": 1}


def test_a_speaker_who_is_not_a_member_is_counted_after_the_members() -> None:
    analytics = compute([msg("Guest", "hi"), msg("PM", "hello")], [], [], ["PM", "QA"])
    assert [p.name for p in analytics.participants] == ["PM", "QA", "Guest"]


# --------------------------------------------------------------------------- networks


def test_reply_network_counts_who_answered_whom_per_ordered_pair() -> None:
    a = msg("PM", id="a")
    b = msg("QA", id="b", reply_to="a")
    c = msg("Dev", id="c", reply_to="a")
    d = msg("PM", id="d", reply_to="b")
    e = msg("QA", id="e", reply_to="a")
    sys_msg = msg("system", id="s", type=MessageType.SYSTEM)
    to_system = msg("PM", id="f", reply_to="s")
    to_nothing = msg("PM", id="g", reply_to="never-written")
    analytics = compute([a, b, c, d, e, sys_msg, to_system, to_nothing], [], [], MEMBERS)
    assert analytics.reply_network == [
        Edge(source="Dev", target="PM", count=1),
        Edge(source="PM", target="QA", count=1),
        Edge(source="QA", target="PM", count=2),
    ]


def test_mention_network_counts_each_name_once_per_message() -> None:
    messages = [
        msg("PM", "@QA and @QA again", mentions=["QA", "QA"]),
        msg("PM", "@QA @Dev", mentions=["QA", "Dev"]),
        msg("Dev", "@PM", mentions=["PM"]),
        msg("system", "@PM", mentions=["PM"], type=MessageType.SYSTEM),
    ]
    analytics = compute(messages, [], [], MEMBERS)
    assert analytics.mention_network == [
        Edge(source="Dev", target="PM", count=1),
        Edge(source="PM", target="Dev", count=1),
        Edge(source="PM", target="QA", count=2),
    ]


def test_threads_rounds_and_duration_come_from_the_log() -> None:
    messages = [
        msg("PM", ts=100.0, thread_id="t1"),
        msg("QA", ts=160.5, thread_id="t1", round=1),
        msg("Dev", ts=130.0, thread_id="t2", round=2),
        msg("system", ts=400.0, round=9, type=MessageType.SYSTEM),
    ]
    analytics = compute(messages, [], [], MEMBERS)
    assert analytics.threads == 2
    assert analytics.rounds == 3
    assert (analytics.started_at, analytics.ended_at, analytics.duration_s) == (100.0, 400.0, 300.0)
    assert analytics.panel_id == "p1"


# --------------------------------------------------------------------------- decisions


def test_timeline_merges_insights_and_decisions_in_time_order() -> None:
    insights = [
        insight("i2", InsightKind.ACTION_ITEM, 30.0, "QA writes the tests"),
        insight("i1", InsightKind.INSIGHT, 10.0, "caching is the bottleneck"),
        insight("i3", InsightKind.DECISION, 40.0, "ship on Friday"),
    ]
    decisions = [decision("d1", ConsensusLevel.UNANIMOUS, ts=20.0)]
    analytics = compute([], decisions, insights, MEMBERS)
    assert [(e.ts, e.kind, e.ref) for e in analytics.timeline] == [
        (10.0, InsightKind.INSIGHT, "i1"),
        (20.0, InsightKind.DECISION, "d1"),
        (30.0, InsightKind.ACTION_ITEM, "i2"),
        (40.0, InsightKind.DECISION, "i3"),
    ]
    assert analytics.timeline[1].text == "proposal d1"
    assert analytics.timeline[1].participant is None
    assert analytics.insights == {"insight": 1, "decision": 1, "action_item": 1, "position": 0}
    assert analytics.decisions == 1  # a DECISION: marker is no voted decision


def test_consensus_rate_counts_unanimous_strong_and_simple_majorities() -> None:
    levels = [
        ConsensusLevel.UNANIMOUS,
        ConsensusLevel.STRONG_MAJORITY,
        ConsensusLevel.SIMPLE_MAJORITY,
        ConsensusLevel.NO_CONSENSUS,
        ConsensusLevel.CONFLICT,
    ]
    decisions = [decision(f"d{i}", level) for i, level in enumerate(levels)]
    analytics = compute([], decisions, [], MEMBERS)
    assert (analytics.decisions, analytics.consensus_reached) == (5, 3)
    assert analytics.consensus_rate == 0.6


def test_effectiveness_is_the_seeds_weighted_score_with_decisions_per_hour() -> None:
    hundred = " ".join(["w"] * 100)
    # Two hours, two equal speakers of two members, one voted decision with consensus:
    # decision_rate 1/2 per hour, consensus 1, gini 0 -> 0.4*0.5 + 0.3 + 0.3 = 0.8.
    messages = [msg("PM", hundred, ts=0.0), msg("QA", hundred, ts=7200.0)]
    decisions = [decision("d", ConsensusLevel.UNANIMOUS)]
    analytics = compute(messages, decisions, [], ["PM", "QA"])
    assert analytics.decision_rate == 0.5
    assert analytics.effectiveness == pytest.approx(0.8)
    # A ten-minute panel counts as an hour, and three decisions an hour are capped at 1.
    short = [msg("PM", hundred, ts=0.0), msg("QA", hundred, ts=600.0)]
    many = [decision(f"d{i}", ConsensusLevel.NO_CONSENSUS) for i in range(3)]
    capped = compute(short, many, [], ["PM", "QA"])
    assert capped.decision_rate == 1.0
    assert capped.effectiveness == pytest.approx(0.4 + 0.0 + 0.3)
    # No decisions at all: only balance counts; one speaker of two halves it.
    lone = compute([msg("PM", hundred)], [], [], ["PM", "QA"])
    assert lone.gini == 0.5
    assert lone.effectiveness == pytest.approx(0.15)


def test_an_empty_panel_has_zero_figures() -> None:
    analytics = compute([], [], [], ["PM", "QA"])
    assert analytics.messages == 0
    assert analytics.duration_s == 0.0
    assert analytics.started_at is None
    assert analytics.gini == 0.0
    assert analytics.effectiveness == pytest.approx(0.3)


# --------------------------------------------------------------------------- recompute


def test_analytics_are_recomputable_from_the_written_logs(tmp_path: Path) -> None:
    """What the orchestrator kept live equals what the files give back, byte for byte."""
    messages = [
        msg(
            "PM",
            "first @QA",
            mentions=["QA"],
            usage=Usage(output_tokens=3, cost_usd=0.001),
            latency_ms=40,
            ts=10.0,
        ),
        msg("QA", "answer", reply_to=None, ts=11.0, latency_ms=60),
        msg("Human", "a question", ts=12.0, type=MessageType.QUESTION),
        msg("system", "Dev left", type=MessageType.SYSTEM, ts=13.0),
    ]
    messages.append(msg("Dev", "late reply", reply_to=messages[0].id, ts=14.0))
    decisions = [decision("d1", ConsensusLevel.SIMPLE_MAJORITY, ts=15.0)]
    insights = [insight("i1", InsightKind.INSIGHT, 12.5)]
    live = LiveAnalytics(MEMBERS)
    log = tmp_path / "panel_messages.jsonl"
    with log.open("wb") as out:
        for message in messages:
            live.update(message)
            out.write(msgspec.json.encode(message) + b"\n")
    for item in decisions:
        live.add_decision(item)
    for item in insights:
        live.add_insight(item)
    final = tmp_path / "final_analytics.json"
    final.write_bytes(encode(live.snapshot()))

    read = [msgspec.json.decode(line, type=PanelMessage) for line in log.read_bytes().splitlines()]
    again = compute(read, decisions, insights, MEMBERS)
    assert decode(final.read_bytes()) == again
    assert encode(again) == final.read_bytes()


# --------------------------------------------------------------------------- live == compute

NAMES = st.sampled_from(["PM", "QA", "Dev", "Human", "Guest"])
IDS = st.sampled_from([f"m{i}" for i in range(12)])


@st.composite
def records(draw: st.DrawFn) -> PanelMessage:
    usage = draw(
        st.none()
        | st.builds(
            Usage,
            input_tokens=st.integers(0, 10_000),
            output_tokens=st.integers(0, 10_000),
            cost_usd=st.floats(0, 5, allow_nan=False),
        )
    )
    reactions = draw(
        st.lists(
            st.builds(Reaction, participant=NAMES, emoji=st.sampled_from("👍🎉"), ts=st.just(1.0)),
            max_size=3,
        )
    )
    return PanelMessage(
        id=draw(IDS),
        panel_id="p1",
        participant=draw(NAMES),
        text=draw(st.text(alphabet="ab @\n", max_size=20)),
        ts=draw(st.floats(0, 1e5, allow_nan=False)),
        turn=0,
        round=draw(st.integers(0, 4)),
        type=draw(st.sampled_from(list(MessageType))),
        reply_to=draw(st.none() | IDS),
        thread_id=draw(st.none() | st.sampled_from(["t1", "t2"])),
        mentions=draw(st.lists(NAMES, max_size=3)),
        reactions=reactions,
        usage=usage,
        latency_ms=draw(st.none() | st.integers(0, 5000)),
        interrupted=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=25), st.lists(st.sampled_from(list(ConsensusLevel))))
def test_live_analytics_equal_compute_after_every_record(
    stream: list[PanelMessage], levels: list[ConsensusLevel]
) -> None:
    """Replies before the message they answer, ids written again, self-replies, system and
    interrupted records: after each record, live figures equal recomputing the prefix."""
    members = ["PM", "QA", "Dev"]
    decisions = [decision(f"d{i}", level, ts=float(i)) for i, level in enumerate(levels)]
    live = LiveAnalytics(members)
    for item in decisions:
        live.add_decision(item)
    for n, record in enumerate(stream, start=1):
        live.update(record)
        assert live.snapshot() == compute(stream[:n], decisions, [], members)
