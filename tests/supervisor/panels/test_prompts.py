"""What each member is told: the stable first-turn lines, catch-up of only what it has not
seen, the simultaneous-round invariants (a hypothesis property), anonymised review, and
history pruned to a budget for members that cannot resume."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    PanelType,
    ParticipantKind,
    ParticipantRole,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels.prompts import (
    catch_up,
    first_prompt,
    labels,
    parse_ranking,
    pruned_history,
    review,
    simultaneous,
    without_resume,
)

PM = MemberSpec(name="PM", persona="pm", role=ParticipantRole.MODERATOR, stance=Stance.FOR)
QA = MemberSpec(name="QA", persona="qa", role=ParticipantRole.CRITIC, stance=Stance.AGAINST)
DEV = MemberSpec(name="Dev", persona="specialist", role=ParticipantRole.EXPERT)
CONFIG = PanelConfig(topic="Ship v2 on Friday?", type=PanelType.DEBATE, members=[PM, QA, DEV])


def msg(who: str, text: str, round: int = 0, n: int = 0, **kw: object) -> PanelMessage:
    return PanelMessage(
        id=f"{who}-{round}-{n}",
        panel_id="p1",
        participant=who,
        text=text,
        ts=float(n),
        turn=n,
        round=round,
        **kw,  # type: ignore[arg-type]
    )


def test_the_first_prompt_carries_the_stable_lines() -> None:
    lines = first_prompt(CONFIG, QA).splitlines()
    assert lines[:5] == [
        "Panel topic: Ship v2 on Friday?",
        "Panel type: debate",
        "You are: QA, critic",
        "Your stance: against",
        "Other members: PM (moderator), Dev (expert)",
    ]
    assert (
        "Markers: begin a line with DECISION:, ACTION ITEM:, INSIGHT: or POSITION: to record one."
        in lines
    )
    assert "Mentions: write @Name to address a member (e.g. @PM)." in lines
    assert "Argue against the topic's proposal and keep to that side." in lines
    assert not any(line.startswith("Moderation:") for line in lines)


def test_no_stance_no_stance_line_and_custom_markers() -> None:
    config = PanelConfig(topic="t", members=[PM, DEV], markers=["DONE:"])
    text = first_prompt(config, DEV)
    assert "Your stance" not in text
    assert "Markers: begin a line with DONE: to record one." in text


def test_the_moderator_is_asked_to_name_the_next_speaker_when_it_picks() -> None:
    config = PanelConfig(
        topic="t", type=PanelType.EXPERT_CONSULTATION, members=[PM, QA, DEV], moderator="PM"
    )
    expected = (
        "Moderation: end your reply with a line NEXT: <Name> naming who speaks next "
        "(one of: QA, Dev)"
    )
    assert expected in first_prompt(config, PM).splitlines()
    assert "Moderation:" not in first_prompt(config, QA)
    assert expected in catch_up(config, PM, [msg("QA", "hi")]).splitlines()
    debate = PanelConfig(topic="t", members=[PM, QA], speaker_policy=SpeakerPolicy.ROUND_ROBIN)
    assert "Moderation:" not in first_prompt(debate, PM)


def test_catch_up_shows_only_the_others_unseen_messages_named_with_their_role() -> None:
    unseen = [
        msg("PM", "We ship.\nDECISION: ship Friday", n=1),
        msg("QA", "my own words", n=2),
        msg("system", "Dev failed", n=3, type=MessageType.SYSTEM),
        msg("Dev", "half a thou", n=4, interrupted=True),
        msg("Dev", "Tests are green.", n=5),
        msg("Ann", "a guest speaks", n=6),
    ]
    assert catch_up(CONFIG, QA, unseen).splitlines() == [
        "Since your last turn:",
        "PM (moderator): We ship.",
        "  DECISION: ship Friday",
        "Dev (expert): Tests are green.",
        "Ann (guest): a guest speaks",
        "Your turn, QA.",
    ]
    assert catch_up(CONFIG, QA, []).splitlines()[0] == (
        "Since your last turn: no one else has spoken."
    )


def test_simultaneous_round_zero_is_the_topic_and_own_instructions_only() -> None:
    text = simultaneous(CONFIG, DEV, 0, [msg("PM", "leak", round=0)])
    assert text.startswith(first_prompt(CONFIG, DEV))
    assert "leak" not in text


def test_simultaneous_round_one_shows_exactly_the_others_round_zero_answers() -> None:
    answers = [msg("PM", "pm says go"), msg("QA", "qa says wait"), msg("Dev", "dev says maybe")]
    text = simultaneous(CONFIG, QA, 1, answers)
    assert text.splitlines()[:3] == [
        "Round 1. The other members' answers to round 0:",
        "PM (moderator): pm says go",
        "Dev (expert): dev says maybe",
    ]
    assert "qa says wait" not in text


MEMBERS = [
    MemberSpec(name=n, role=r)
    for n, r in [("A", ParticipantRole.EXPERT), ("B", ParticipantRole.CRITIC), ("C", "advocate")]
]


@st.composite
def rounds_of_answers(draw: st.DrawFn) -> tuple[int, list[PanelMessage]]:
    """A round number and messages from rounds around it, each text unique and traceable."""
    current = draw(st.integers(1, 5))
    messages = []
    for n in range(draw(st.integers(0, 12))):
        who = draw(st.sampled_from(["A", "B", "C"]))
        rnd = draw(st.integers(max(0, current - 2), current + 1))
        kind = draw(st.sampled_from([MessageType.CONVERSATION, MessageType.SYSTEM]))
        body = draw(st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=30))
        text = f"<{who}|{rnd}|{n}> {body}"
        messages.append(msg(who, text, round=rnd, n=n, type=kind))
    return current, messages


@settings(max_examples=300, deadline=None)
@given(rounds_of_answers(), st.sampled_from(MEMBERS))
def test_simultaneous_prompts_hold_exactly_the_others_previous_round(
    case: tuple[int, list[PanelMessage]], member: MemberSpec
) -> None:
    current, messages = case
    config = PanelConfig(topic="topic", members=MEMBERS)
    text = simultaneous(config, member, current, messages)
    for m in messages:
        tag = m.text.split(" ", 1)[0]
        wanted = (
            m.round == current - 1
            and m.participant != member.name
            and m.type is not MessageType.SYSTEM
        )
        assert (tag in text) is wanted, (tag, current, member.name)
        if wanted:
            role = next(x.role for x in MEMBERS if x.name == m.participant)
            assert f"{m.participant} ({role}): {tag}" in text


def test_review_anonymises_the_others_and_returns_the_label_map() -> None:
    answers = [msg("PM", "answer one"), msg("QA", "answer two"), msg("Dev", "answer three")]
    text, label_map = review(CONFIG, QA, answers, random.Random(7))
    assert sorted(label_map) == ["A", "B"]
    assert sorted(label_map.values()) == ["Dev", "PM"]
    assert "answer two" not in text
    for name in ("PM", "Dev", "moderator", "expert"):
        assert name not in text
    for label, who in label_map.items():
        shown = next(m.text for m in answers if m.participant == who)
        assert f"Response {label}:\n  {shown}" in text
    assert "RANKING: A > B" in text
    again, same_map = review(CONFIG, QA, answers, random.Random(7))
    assert (again, same_map) == (text, label_map)


def test_review_order_is_drawn_from_the_rng() -> None:
    answers = [msg(n, f"text of {n}") for n in "ABCDEFG"]
    config = PanelConfig(topic="t", members=[MemberSpec(name=n) for n in "ABCDEFGH"])
    maps = {
        tuple(review(config, config.members[-1], answers, random.Random(s))[1].values())
        for s in range(10)
    }
    assert len(maps) > 1


def test_a_ranking_reply_maps_back_to_members() -> None:
    label_map = {"A": "Dev", "B": "PM", "C": "QA"}
    assert parse_ranking("Thoughts.\nranking: b > a > c > b > Z", label_map) == ["PM", "Dev", "QA"]
    assert parse_ranking("no ranking here", label_map) is None


def test_labels_go_past_z() -> None:
    assert labels(28)[:3] == ["A", "B", "C"]
    assert labels(28)[-3:] == ["Z", "AA", "AB"]


def test_pruned_history_keeps_the_newest_whole_messages_within_the_budget() -> None:
    history = [msg("PM", "x" * 40, n=i) for i in range(10)]
    line = len("PM (moderator): " + "x" * 40) + 1
    text = pruned_history(CONFIG, history, budget=3 * line + 5)
    lines = text.splitlines()
    assert lines[0] == "(7 earlier messages left out)"
    assert lines[1:] == ["PM (moderator): " + "x" * 40] * 3
    assert pruned_history(CONFIG, history, budget=10_000).count("\n") == 9
    assert pruned_history(CONFIG, history, budget=0) == "(10 earlier messages left out)"


def test_pruned_history_never_cuts_a_message() -> None:
    history = [msg("PM", "short", n=0), msg("QA", "y" * 500, n=1)]
    assert pruned_history(CONFIG, history, budget=100) == "(2 earlier messages left out)"


def test_a_member_that_cannot_resume_gets_its_instructions_and_the_pruned_history() -> None:
    config = PanelConfig(topic="t", members=[PM, QA], history_budget_chars=70)
    history = [msg("PM", "p" * 30, n=0), msg("QA", "q" * 30, n=1), msg("PM", "last", n=2)]
    text = without_resume(config, QA, history)
    assert text.startswith(first_prompt(config, QA))
    assert "(1 earlier message left out)" in text
    assert "QA (critic): " + "q" * 30 in text  # its own words too: it remembers nothing
    assert text.endswith("PM (moderator): last\nYour turn, QA.")


def test_humans_appear_among_the_other_members() -> None:
    eve = MemberSpec(name="Eve", kind=ParticipantKind.HUMAN, role=ParticipantRole.OBSERVER)
    config = PanelConfig(topic="t", members=[PM, eve])
    assert "Other members: Eve (observer)" in first_prompt(config, PM)
