"""Consensus from positions (issue 14, item 6 and the acceptance "Consensus"): the levels in
integer arithmetic, the stated rules for abstentions, vetoes and even splits, the position
round's request text and the parsing of members' replies, and the decision record."""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import ConsensusLevel, Decision, Position, Vote
from agentplex.supervisor.panels.consensus import (
    NO_POSITION,
    agreement_bar,
    consensus,
    decision,
    parse_position,
    position_request,
    vote_from_reply,
)

A, C, D, X, V = (
    Position.AGREE,
    Position.AGREE_WITH_CONDITIONS,
    Position.DISAGREE,
    Position.ABSTAIN,
    Position.VETO,
)
RANK = {
    ConsensusLevel.CONFLICT: 0,
    ConsensusLevel.NO_CONSENSUS: 0,
    ConsensusLevel.SIMPLE_MAJORITY: 1,
    ConsensusLevel.STRONG_MAJORITY: 2,
    ConsensusLevel.UNANIMOUS: 3,
}


def ballot(*positions: Position) -> list[Vote]:
    return [Vote(participant=f"m{i}", position=p, reason="") for i, p in enumerate(positions)]


@pytest.mark.parametrize(
    ("positions", "level", "agreement"),
    [
        pytest.param((A, A, A), ConsensusLevel.UNANIMOUS, 1.0, id="3-of-3-unanimous"),
        pytest.param((A, A, A, A, D), ConsensusLevel.STRONG_MAJORITY, 0.8, id="4-of-5-strong"),
        pytest.param((A, A, D), ConsensusLevel.SIMPLE_MAJORITY, 2 / 3, id="2-of-3-simple"),
        pytest.param((A, D), ConsensusLevel.NO_CONSENSUS, 0.5, id="1-of-2-none"),
        pytest.param((A, A, D, D), ConsensusLevel.CONFLICT, 0.5, id="2-vs-2-conflict"),
        pytest.param((A, C, A, D, D, D), ConsensusLevel.CONFLICT, 0.5, id="3-vs-3-conflict"),
        pytest.param((A, A, A, A, V), ConsensusLevel.CONFLICT, 0.8, id="veto-conflict"),
        pytest.param((A, A, D, D, D), ConsensusLevel.NO_CONSENSUS, 0.4, id="2-of-5-none"),
        pytest.param((A, A, A, D, D), ConsensusLevel.SIMPLE_MAJORITY, 0.6, id="3-of-5-simple"),
        pytest.param((C, C, C), ConsensusLevel.UNANIMOUS, 1.0, id="conditions-agree"),
        pytest.param((A, X, X), ConsensusLevel.UNANIMOUS, 1.0, id="abstain-not-counted"),
        pytest.param((X, X, X), ConsensusLevel.NO_CONSENSUS, 0.0, id="all-abstain"),
        pytest.param((), ConsensusLevel.NO_CONSENSUS, 0.0, id="no-votes"),
        pytest.param((D, D, D), ConsensusLevel.NO_CONSENSUS, 0.0, id="all-disagree"),
    ],
)
def test_levels_follow_the_stated_rules(
    positions: tuple[Position, ...], level: ConsensusLevel, agreement: float
) -> None:
    got_level, got_agreement = consensus(ballot(*positions))
    assert got_level is level
    assert got_agreement == pytest.approx(agreement)


def test_two_of_three_reads_as_0_667() -> None:
    assert round(consensus(ballot(A, A, D))[1], 3) == 0.667


def test_a_veto_the_round_did_not_offer_counts_as_a_disagreement() -> None:
    assert consensus(ballot(A, A, A, A, V), veto=False) == (ConsensusLevel.STRONG_MAJORITY, 0.8)
    assert consensus(ballot(A, V), veto=False) == (ConsensusLevel.NO_CONSENSUS, 0.5)


def test_a_threshold_moves_the_bar_of_consensus() -> None:
    assert consensus(ballot(A, A, A, A, D), 0.9)[0] is ConsensusLevel.NO_CONSENSUS
    nine_of_ten = ballot(*([A] * 9 + [D]))
    assert consensus(nine_of_ten, 0.9)[0] is ConsensusLevel.STRONG_MAJORITY
    assert consensus(ballot(A, A, D), 0.7)[0] is ConsensusLevel.NO_CONSENSUS
    assert consensus(ballot(A, A, A, D), 0.7)[0] is ConsensusLevel.SIMPLE_MAJORITY
    assert consensus(ballot(A, A, A, A, D), 1.0)[0] is ConsensusLevel.NO_CONSENSUS


def test_the_bar_is_the_threshold_as_written_not_its_float() -> None:
    # 25 x 0.56 is 14.000000000000002 in floats: 14 of 25 would miss a bar of 0.56.
    assert 25 * 0.56 > 14
    fourteen_of_25 = ballot(*([A] * 14 + [D] * 11))
    assert consensus(fourteen_of_25, 0.56)[0] is ConsensusLevel.SIMPLE_MAJORITY
    assert consensus(ballot(*([A] * 13 + [D] * 12)), 0.56)[0] is ConsensusLevel.NO_CONSENSUS
    assert agreement_bar(0.56) == Fraction(14, 25)
    assert agreement_bar(0.8) == Fraction(4, 5)
    assert agreement_bar(None) == Fraction(3, 5)


@pytest.mark.parametrize("threshold", [0.5, 0.0, -1.0, 1.01, math.nan, math.inf])
def test_a_threshold_outside_half_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(InvalidArgument, match="consensus threshold"):
        consensus(ballot(A, A), threshold)


def test_a_second_vote_by_one_member_is_refused() -> None:
    votes = [Vote(participant="QA", position=A), Vote(participant="qa", position=D)]
    with pytest.raises(InvalidArgument, match="voted twice"):
        consensus(votes)


positions = st.sampled_from([A, C, D, X, V])
no_veto = st.sampled_from([A, C, D, X])
thresholds = st.integers(min_value=51, max_value=100)


@settings(max_examples=300, deadline=None)
@given(st.lists(positions, max_size=12), st.data())
def test_the_order_of_the_votes_never_matters(ps: list[Position], data: st.DataObject) -> None:
    votes = ballot(*ps)
    shuffled = data.draw(st.permutations(votes))
    assert consensus(shuffled) == consensus(votes)


@settings(max_examples=300, deadline=None)
@given(st.lists(positions, max_size=12), st.integers(min_value=0, max_value=6), thresholds)
def test_abstentions_never_change_the_level_of_the_others(
    ps: list[Position], abstaining: int, percent: int
) -> None:
    others = [p for p in ps if p is not X]
    assert consensus(ballot(*ps), percent / 100) == consensus(ballot(*others), percent / 100)
    with_more = ballot(*others, *([X] * abstaining))
    assert consensus(with_more, percent / 100) == consensus(ballot(*others), percent / 100)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=30), thresholds)
def test_the_level_never_falls_as_agreement_rises(counted: int, percent: int) -> None:
    ranks = [
        RANK[consensus(ballot(*([A] * agree + [D] * (counted - agree))), percent / 100)[0]]
        for agree in range(counted + 1)
    ]
    assert ranks == sorted(ranks)
    assert ranks[-1] == RANK[ConsensusLevel.UNANIMOUS]


@settings(max_examples=300, deadline=None)
@given(st.lists(no_veto, min_size=1, max_size=40), thresholds)
def test_consensus_is_reached_exactly_at_the_threshold(ps: list[Position], percent: int) -> None:
    agree = sum(p in (A, C) for p in ps)
    counted = sum(p is not X for p in ps)
    level, agreement = consensus(ballot(*ps), percent / 100)
    reached = counted > 0 and agree * 100 >= percent * counted
    assert (RANK[level] >= 1) == reached
    assert agreement == (agree / counted if counted else 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(positions, max_size=12))
def test_any_veto_is_a_conflict(ps: list[Position]) -> None:
    level, _ = consensus(ballot(*ps, V))
    assert level is ConsensusLevel.CONFLICT


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("POSITION: agree — fine by me", (A, "fine by me")),
        ("position: AGREE - fine by me", (A, "fine by me")),
        ("**Position:** Agree with conditions: add a rollback plan", (C, "add a rollback plan")),
        ("POSITION: conditionally agree, if QA signs off", (C, "if QA signs off")),
        ("POSITION: agree_with_conditions — tests first", (C, "tests first")),
        ("I weighed it.\nMy position \u2013 I strongly disagree. Too risky.", (D, "Too risky.")),
        ("Thoughts...\n\n- POSITION: abstain (not my area)", (X, "(not my area)")),
        ("POSITION: VETO — it breaks the public API", (V, "it breaks the public API")),
        ("POSITION:disagree", (D, "")),
        ("Disagree — the numbers do not add up.", (D, "the numbers do not add up.")),
        ("Agree.", (A, "")),
        (
            "POSITION: agree|agree with conditions|disagree|abstain — reason\nPOSITION: agree — ok",
            (A, "ok"),
        ),
        ("POSITION: disagree — at first\nPOSITION: agree — convinced now", (A, "convinced now")),
    ],
)
def test_positions_are_read_from_replies_tolerantly(
    reply: str, expected: tuple[Position, str]
) -> None:
    assert parse_position(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I have no strong view.",
        "Agreement is far off on this one.",
        "POSITION: agree|agree with conditions|disagree|abstain|veto — reason",
        "POSITION: agree / disagree, hard to say",
        "The position: unclear",
    ],
)
def test_a_reply_stating_no_single_position_is_none(reply: str) -> None:
    assert parse_position(reply) is None


def test_the_request_names_the_proposal_and_the_line_to_answer() -> None:
    with_veto = position_request("Ship v2 on Friday\nwith the new schema", veto=True)
    without = position_request("Ship v2 on Friday", veto=False)
    assert "Ship v2 on Friday" in with_veto and "with the new schema" in with_veto
    assert "POSITION: agree|agree with conditions|disagree|abstain|veto — " in with_veto
    assert "POSITION: agree|agree with conditions|disagree|abstain — " in without
    assert "veto" not in without.lower()
    # A member that only echoes the request has stated no position.
    assert parse_position(with_veto) is None and parse_position(without) is None


@pytest.mark.parametrize("position", list(Position))
def test_an_answer_in_the_requested_form_reads_back(position: Position) -> None:
    word = position.value.replace("_", " ")
    reply = f"Some thinking first.\nPOSITION: {word} — because of the latency budget"
    assert parse_position(reply) == (position, "because of the latency budget")


def test_a_reply_without_a_position_is_an_abstention_saying_so() -> None:
    assert vote_from_reply("QA", "I need more data.") == Vote(
        participant="QA", position=X, reason=NO_POSITION
    )
    assert vote_from_reply("QA", "POSITION: agree — ok") == Vote(
        participant="QA", position=A, reason="ok"
    )


def test_a_decision_records_votes_level_and_action_items() -> None:
    proposal = "Adopt the new cache.\nACTION ITEM: @Dev writes the migration"
    votes = [
        Vote(participant="PM", position=A, reason="good for users"),
        Vote(participant="QA", position=C, reason="load test it first"),
        Vote(participant="Dev", position=D, reason="ACTION ITEM: benchmark the old one"),
    ]
    made = decision("p1", proposal, votes, threshold=None, now=12.5)
    assert (made.level, round(made.agreement, 3)) == (ConsensusLevel.SIMPLE_MAJORITY, 0.667)
    assert made.panel_id == "p1" and made.ts == 12.5 and made.votes == votes
    assert made.proposal == proposal
    assert made.action_items == [
        "@Dev writes the migration",
        "benchmark the old one",
        "load test it first (condition of QA)",
    ]
    again = decision("p1", proposal, votes, threshold=None, now=12.5)
    assert again.id == made.id and again.id.startswith("p1-d")
    assert decision("p1", proposal, votes, threshold=None, now=13.0).id != made.id
    assert decision("p1", proposal, votes, threshold=None, now=1, decision_id="p1-d7").id == "p1-d7"
    assert msgspec.json.decode(msgspec.json.encode(made), type=Decision) == made


def test_a_decision_records_an_unoffered_veto_as_the_disagreement_it_counted_as() -> None:
    votes = [Vote(participant="PM", position=A), Vote(participant="QA", position=V, reason="no")]
    offered = decision("p1", "Go", votes, threshold=None, now=1.0)
    assert offered.level is ConsensusLevel.CONFLICT and offered.votes[1].position is V
    not_offered = decision("p1", "Go", votes, threshold=None, now=1.0, veto=False)
    assert not_offered.level is ConsensusLevel.NO_CONSENSUS
    assert not_offered.votes[1] == Vote(participant="QA", position=D, reason="no")
    # What was recorded recomputes to what was decided.
    assert consensus(not_offered.votes) == (not_offered.level, not_offered.agreement)


@pytest.mark.parametrize("proposal", ["", "   \n "])
def test_a_decision_without_a_proposal_is_refused(proposal: str) -> None:
    with pytest.raises(InvalidArgument, match="proposal"):
        decision("p1", proposal, ballot(A), threshold=None, now=1.0)
