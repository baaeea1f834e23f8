"""Insights caught in members' replies (issue 14, item 6): marked lines by configurable
markers, who an action item falls to, deterministic ids, and ``@Name`` mentions (the
mention speaker policy's input)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.protocol.panels import Insight, InsightKind, PanelMessage
from agentplex.supervisor.panels.insights import (
    DEFAULT_MARKERS,
    capture,
    marked_lines,
    marker_kind,
    mentions,
    responsible,
)

MEMBERS = ["PM", "QA", "Dev", "DevOps"]


def said(text: str, *, by: str = "PM", interrupted: bool = False) -> PanelMessage:
    return PanelMessage(
        id="m7",
        panel_id="p1",
        participant=by,
        text=text,
        ts=1.0,
        turn=3,
        round=1,
        interrupted=interrupted,
    )


def test_each_marked_line_becomes_one_insight_of_its_kind() -> None:
    message = said(
        "We talked it through.\n"
        "DECISION: ship v2 on Friday\n"
        "ACTION ITEM: @QA runs the load test\n"
        "INSIGHT: latency matters more than throughput here\n"
        "POSITION: agree — the risk is small\n"
    )
    insights = capture(message, DEFAULT_MARKERS, MEMBERS, now=42.0)
    assert insights == [
        Insight(id="m7-i1", panel_id="p1", kind=InsightKind.DECISION,
                text="ship v2 on Friday", participant="PM", message_id="m7", ts=42.0),
        Insight(id="m7-i2", panel_id="p1", kind=InsightKind.ACTION_ITEM,
                text="@QA runs the load test", participant="PM", message_id="m7", ts=42.0,
                responsible="QA"),
        Insight(id="m7-i3", panel_id="p1", kind=InsightKind.INSIGHT,
                text="latency matters more than throughput here", participant="PM",
                message_id="m7", ts=42.0),
        Insight(id="m7-i4", panel_id="p1", kind=InsightKind.POSITION,
                text="agree — the risk is small", participant="PM", message_id="m7", ts=42.0),
    ]  # fmt: skip


def test_capturing_a_message_again_yields_the_same_records() -> None:
    message = said("DECISION: a\nnoise\nACTION ITEM: b\nDECISION: c")
    first = capture(message, DEFAULT_MARKERS, MEMBERS, now=5.0)
    assert [i.id for i in first] == ["m7-i1", "m7-i2", "m7-i3"]
    assert capture(message, DEFAULT_MARKERS, MEMBERS, now=5.0) == first
    lines = [msgspec.json.encode(i) for i in first]
    assert [msgspec.json.decode(line, type=Insight) for line in lines] == first


@pytest.mark.parametrize(
    "line",
    [
        "DECISION: ship it",
        "decision: ship it",
        "  - **Decision:** ship it",
        "**DECISION**: ship it",
        "1. Decision: ship it",
        "## Decision: ship it",
        "So after all that, DECISION: ship it",
        "* DECISION:ship it **",
    ],
)
def test_markers_are_found_as_members_write_them(line: str) -> None:
    assert [(m.kind, m.text) for m in marked_lines(line)] == [(InsightKind.DECISION, "ship it")]


@pytest.mark.parametrize(
    "text",
    [
        "We reached a decision: ship it",  # prose: lower case inside a sentence
        "```\nDECISION: ship it\n```",  # code
        "~~~python\n# ACTION ITEM: later\n~~~",
        "> DECISION: ship it",  # a quote of someone else's message
        "DECISION:",  # nothing decided
        "DECISION:   **",
        "INDECISION: none",
        "",
    ],
)
def test_lines_that_only_look_marked_yield_nothing(text: str) -> None:
    assert marked_lines(text) == []


def test_a_marker_alone_on_its_line_takes_the_next_line() -> None:
    found = marked_lines("**DECISION:**\n\nWe ship on Friday.\nMore prose.")
    assert [(m.kind, m.text) for m in found] == [(InsightKind.DECISION, "We ship on Friday.")]
    assert marked_lines("DECISION:\nACTION ITEM: x")[0].kind is InsightKind.ACTION_ITEM
    assert len(marked_lines("DECISION:\nACTION ITEM: x")) == 1


def test_one_insight_per_line_the_first_marker_winning() -> None:
    found = marked_lines("DECISION: ship it. ACTION ITEM: QA tests it")
    assert [(m.kind, m.text) for m in found] == [
        (InsightKind.DECISION, "ship it. ACTION ITEM: QA tests it")
    ]


def test_of_two_markers_at_one_place_the_longer_wins() -> None:
    found = marked_lines("ACTION ITEM: write it", ["ACTION:", "ACTION ITEM:"])
    assert [(m.marker, m.text) for m in found] == [("ACTION ITEM:", "write it")]


def test_markers_are_configurable_and_map_to_kinds() -> None:
    text = "TODO: add tests\nRISK: the cache may go stale\nDECISION: not a marker here"
    found = marked_lines(text, ["TODO:", "RISK:"])
    assert [(m.kind, m.marker, m.text) for m in found] == [
        (InsightKind.ACTION_ITEM, "TODO:", "add tests"),
        (InsightKind.INSIGHT, "RISK:", "the cache may go stale"),
    ]
    assert marked_lines(text, []) == []
    assert marker_kind("Next step") is InsightKind.ACTION_ITEM
    assert marker_kind("CONCLUSION:") is InsightKind.DECISION
    assert marker_kind("vote:") is InsightKind.POSITION


def test_an_interrupted_reply_yields_no_insight() -> None:
    cut = said("DECISION: half of", interrupted=True)
    assert capture(cut, DEFAULT_MARKERS, MEMBERS, now=1.0) == []


@pytest.mark.parametrize(
    ("item", "speaker", "owner"),
    [
        ("@qa runs the load test", "PM", "QA"),
        ("QA will run the load test", "PM", "QA"),
        ("qa to run the load test", "PM", "QA"),
        ("run the load test (owner: qa)", "PM", "QA"),
        ("run the load test, assigned to @DevOps", "PM", "DevOps"),
        ("ask @Dev for numbers (owner: QA)", "PM", "QA"),
        ("@DevOps and @Dev pair on it", "PM", "DevOps"),
        ("I'll write the RFC", "Dev", "Dev"),
        ("I will write the RFC", "Dev", "Dev"),
        ("I will write the RFC", "Bob", None),
        ("Bob will write the RFC", "PM", None),
        ("write the RFC", "PM", None),
        ("mail dev@qa.example", "PM", None),
    ],
)
def test_an_action_item_names_who_it_falls_to(item: str, speaker: str, owner: str | None) -> None:
    assert responsible(item, MEMBERS, speaker=speaker) == owner


def test_mentions_are_members_in_order_each_once_as_spelt() -> None:
    text = "@qa, what do you think? And @Dev — also @QA again; @Bob is not here, nor @DevOpsy."
    assert mentions(text, MEMBERS) == ["QA", "Dev"]
    assert mentions("@DevOps first, then @Dev.", MEMBERS) == ["DevOps", "Dev"]
    assert mentions("write to dev@qa.example or QA directly", MEMBERS) == []
    assert mentions("@QA's answer", MEMBERS) == ["QA"]
    assert mentions("@QA", []) == []


def test_names_with_regex_characters_are_matched_literally() -> None:
    members = ["C++", "A.I"]
    assert mentions("@c++ and @A.I and @AxI", members) == ["C++", "A.I"]


names = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=8, unique_by=str.casefold), st.data())
def test_mentions_find_exactly_the_members_mentioned(
    members: list[str], data: st.DataObject
) -> None:
    picked = data.draw(st.lists(st.sampled_from(members), max_size=12))
    text = " ".join(f"hey @{name}," for name in picked) + " and @zz_not_a_member"
    expected = list(dict.fromkeys(picked))
    found = mentions(text, members)
    assert found == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*DEFAULT_MARKERS, "noise", "> DECISION: q", ""]), max_size=20))
def test_ids_are_unique_and_one_per_marked_line(lines: list[str]) -> None:
    text = "\n".join(f"{line} item {n}" if line else "" for n, line in enumerate(lines))
    insights = capture(said(text), DEFAULT_MARKERS, MEMBERS, now=1.0)
    assert len({i.id for i in insights}) == len(insights)
    assert len(insights) == sum(line in DEFAULT_MARKERS for line in lines)
