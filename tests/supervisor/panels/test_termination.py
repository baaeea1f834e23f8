"""The --until grammar: each condition alone and combined stops with its own reason; bad input
is refused naming the bad part."""

from __future__ import annotations

import pytest

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import MessageType, PanelMessage, StopReason
from agentplex.protocol.values import Usage
from agentplex.supervisor.panels.termination import Progress, marker_in, parse_until


def said(text: str, who: str = "PM", **kw: object) -> PanelMessage:
    return PanelMessage(
        id=f"m-{who}-{len(text)}",
        panel_id="p",
        participant=who,
        text=text,
        ts=0.0,
        turn=1,
        round=0,
        usage=Usage(),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("until", "met", "unmet", "reason"),
    [
        ("rounds=2", Progress(rounds=2), Progress(rounds=1), StopReason.MAX_ROUNDS),
        ("messages=5", Progress(messages=5), Progress(messages=4), StopReason.MAX_MESSAGES),
        ("tokens=1000", Progress(tokens=1000), Progress(tokens=999), StopReason.TOKEN_BUDGET),
        ("cost=0.5", Progress(cost_usd=0.5), Progress(cost_usd=0.49), StopReason.COST_BUDGET),
        ("time=90s", Progress(elapsed_s=90), Progress(elapsed_s=89.9), StopReason.WALL_CLOCK),
        ("time=10m", Progress(elapsed_s=600), Progress(elapsed_s=599), StopReason.WALL_CLOCK),
        ("time=1h30m", Progress(elapsed_s=5400), Progress(elapsed_s=5399), StopReason.WALL_CLOCK),
        (
            "marker=DECISION:",
            Progress(last_messages=[said("Fine.\nDECISION: ship on Friday")]),
            Progress(last_messages=[said("No decision: yet, we need more")]),
            StopReason.MARKER,
        ),
        (
            "verdict",
            Progress(moderator="PM", last_messages=[said("Enough.\nVERDICT: stop")]),
            Progress(moderator="PM", last_messages=[said("VERDICT: stop", who="QA")]),
            StopReason.MODERATOR_VERDICT,
        ),
    ],
)
def test_each_condition_alone_stops_with_its_own_reason(
    until: str, met: Progress, unmet: Progress, reason: StopReason
) -> None:
    assert parse_until([until]).check(unmet) is None
    assert parse_until([until]).check(met) is reason


def test_and_needs_every_term_and_stops_with_the_last_terms_reason() -> None:
    condition = parse_until(["messages=3 and rounds=2"])
    assert condition.check(Progress(messages=5, rounds=1)) is None
    assert condition.check(Progress(messages=2, rounds=2)) is None
    assert condition.check(Progress(messages=3, rounds=2)) is StopReason.MAX_ROUNDS


def test_or_stops_on_either_term_with_that_terms_reason() -> None:
    condition = parse_until(["rounds=4 or cost=1.25"])
    assert condition.check(Progress(rounds=3, cost_usd=1.0)) is None
    assert condition.check(Progress(rounds=4)) is StopReason.MAX_ROUNDS
    assert condition.check(Progress(rounds=1, cost_usd=2)) is StopReason.COST_BUDGET


def test_and_binds_tighter_than_or() -> None:
    condition = parse_until(["messages=10 or rounds=2 and tokens=100"])
    assert condition.check(Progress(rounds=2)) is None  # rounds alone is not enough
    assert condition.check(Progress(rounds=2, tokens=100)) is StopReason.TOKEN_BUDGET
    assert condition.check(Progress(messages=10)) is StopReason.MAX_MESSAGES


def test_several_until_strings_are_or_ed() -> None:
    condition = parse_until(["rounds=5", "marker=ACTION ITEM:"])
    assert condition.describe() == "rounds=5 or marker=ACTION ITEM:"
    stop = condition.check(Progress(rounds=1, last_messages=[said("- ACTION ITEM: QA tests")]))
    assert stop is StopReason.MARKER


def test_a_marker_seen_earlier_stays_met_for_an_and_group() -> None:
    condition = parse_until(["marker=DECISION: and rounds=3"])
    assert condition.check(Progress(rounds=1, last_messages=[said("DECISION: go")])) is None
    assert condition.check(Progress(rounds=2)) is None
    assert condition.check(Progress(rounds=3)) is StopReason.MAX_ROUNDS


def test_a_quoted_phrase_may_hold_and_or() -> None:
    condition = parse_until(['marker="pros and cons settled" or rounds=9'])
    assert condition.check(Progress(last_messages=[said("so Pros and Cons settled.")])) is (
        StopReason.MARKER
    )


def test_markers_in_system_or_interrupted_messages_do_not_count() -> None:
    condition = parse_until(["marker=DECISION:"])
    messages = [
        said("DECISION: a", type=MessageType.SYSTEM),
        said("DECISION: b", interrupted=True),
    ]
    assert condition.check(Progress(last_messages=messages)) is None


def test_a_colon_marker_must_begin_a_line_any_other_phrase_anywhere() -> None:
    assert marker_in("DECISION:", "  * **DECISION:** ship")  # Markdown marks are skipped
    assert marker_in("DECISION:", "> - decision: ship")
    assert not marker_in("DECISION:", "we made no decision: yet")
    assert marker_in("i rest my case", "And so I REST MY CASE.")


def test_verdict_counts_only_from_the_moderator() -> None:
    condition = parse_until(["verdict"])
    assert condition.needs_moderator
    assert condition.check(Progress(moderator=None, last_messages=[said("VERDICT: stop")])) is None
    stop = condition.check(Progress(moderator="pm", last_messages=[said("verdict: conclude")]))
    assert stop is StopReason.MODERATOR_VERDICT


def test_ended_by_request_and_members_gone_come_first() -> None:
    condition = parse_until(["rounds=100"])
    assert condition.check(Progress(ended_by_request=True)) is StopReason.ENDED_BY_REQUEST
    assert condition.check(Progress(members_alive=0)) is StopReason.MEMBERS_GONE
    assert parse_until([]).check(Progress()) is None


def test_max_rounds_is_or_ed_with_the_until_conditions() -> None:
    condition = parse_until(["messages=50"], max_rounds=2)
    assert condition.check(Progress(rounds=2, messages=4)) is StopReason.MAX_ROUNDS
    assert not condition.needs_moderator


@pytest.mark.parametrize(
    ("until", "named"),
    [
        ("rounds", "'rounds'"),
        ("rounds=", "'rounds='"),
        ("rounds=two", "'two' is not a int"),
        ("rounds=0", "must be above 0"),
        ("messages=-3", "must be above 0"),
        ("tokens=1.5", "'1.5' is not a int"),
        ("cost=nan", "must be above 0"),
        ("cost=inf", "must be above 0"),
        ("time=90", "'90' is not a duration"),
        ("time=5 minutes", "'5 minutes' is not a duration"),
        ("time=0s", "must be above 0"),
        ("marker=", "the marker is empty"),
        ("marker=pros and cons", "'cons' is not a condition"),
        ('marker="open', "a quote is not closed"),
        ("rounds=2 and", "must join two conditions"),
        ("or rounds=2", "must join two conditions"),
        ("rounds=2 or or messages=3", "'or messages=3' is not a condition"),
        ("budget=3", "'budget=3' is not a condition"),
        ("verdict=yes", "'verdict=yes' is not a condition"),
        ("", "is empty"),
        ("x" * 1001, "over 1000 characters"),
    ],
)
def test_malformed_until_is_refused_naming_the_bad_part(until: str, named: str) -> None:
    with pytest.raises(InvalidArgument, match="--until") as caught:
        parse_until(["rounds=3", until])
    assert named in caught.value.message
    assert caught.value.code == "invalid_argument"


def test_too_many_until_strings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="at most 16"):
        parse_until(["rounds=1"] * 17)
