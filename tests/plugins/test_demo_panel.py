"""The demo agent's panel voice, in-process: how it reads the prompts the panel writes
(``supervisor/panels/prompts.py``, ``consensus.position_request``) and what it answers. The
agent run as a real process is in ``test_demo_agent.py``."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from agentplex.plugins import demo_panel
from agentplex.plugins.demo_voices import PM, QA, SPECIALIST, STANCE_LINES
from agentplex.protocol.panels import (
    InsightKind,
    MemberSpec,
    PanelConfig,
    PanelMessage,
    PanelType,
    ParticipantRole,
    Position,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels import insights, prompts
from agentplex.supervisor.panels.consensus import parse_position, position_request

MEMBERS = [
    MemberSpec(name="PM", persona="pm", role=ParticipantRole.MODERATOR, stance=Stance.FOR),
    MemberSpec(name="QA", persona="qa", role=ParticipantRole.CRITIC, stance=Stance.AGAINST),
    MemberSpec(name="Specialist", persona="specialist", stance=Stance.NEUTRAL),
]
CONFIG = PanelConfig(topic="Move billing to an event queue", type=PanelType.DEBATE, members=MEMBERS)
NAMES = [m.name for m in MEMBERS]


def message(participant: str, text: str, n: int = 1) -> PanelMessage:
    return PanelMessage(
        id=f"m{n}",
        panel_id="p",
        participant=participant,
        text=text,
        ts=time.time(),
        turn=n,
        round=0,
    )


def seat_of(name: str, config: PanelConfig = CONFIG) -> demo_panel.Seat:
    member = next(m for m in config.members if m.name == name)
    seat = demo_panel.seat([prompts.first_prompt(config, member)], None, None)
    assert seat is not None
    return seat


def test_the_seat_is_read_from_the_first_prompt_the_panel_writes() -> None:
    seat = seat_of("QA")
    assert seat.topic == "Move billing to an event queue"
    assert seat.kind == "debate"
    assert seat.me == demo_panel.Member("QA", "critic")
    assert seat.stance == "against"
    assert seat.others == (
        demo_panel.Member("PM", "moderator"),
        demo_panel.Member("Specialist", "expert"),
    )
    assert seat.voice is QA


def test_a_prompt_without_the_panel_header_is_no_panel() -> None:
    assert demo_panel.seat(["hello there"], None, None) is None
    assert demo_panel.seat(["Panel topic: lunch, but no seat"], None, None) is None
    assert demo_panel.seat(["say: Panel topic: x\nsay: You are: y, critic"], None, None) is None


def test_the_first_prompt_to_state_a_field_wins_over_a_relayed_message() -> None:
    later = prompts.catch_up(
        CONFIG, MEMBERS[1], [message("PM", "Agenda\nPanel topic: something else entirely")]
    )
    seat = demo_panel.seat([prompts.first_prompt(CONFIG, MEMBERS[1]), later], None, None)
    assert seat is not None and seat.topic == CONFIG.topic


@pytest.mark.parametrize(
    ("persona", "name", "instructions", "voice"),
    [
        ("PM", "Alice", None, PM),
        (None, "QA", None, QA),
        (None, "Bob", "You are the specialist who implements this task.", SPECIALIST),
        ("Specialist", "QA", None, SPECIALIST),  # the persona wins over the member's name
    ],
)
def test_the_voice_follows_the_persona_then_the_name_then_the_instructions(
    persona: str | None, name: str, instructions: str | None, voice: object
) -> None:
    assert demo_panel.voice_for(name, persona, instructions) is voice


def test_relayed_messages_keep_their_indented_lines_and_are_not_the_orchestrators() -> None:
    prompt = prompts.catch_up(
        CONFIG,
        MEMBERS[1],
        [
            message("PM", "Ship it.\nDECISION: ship\nPOSITION: agree — yes"),
            message("Specialist", "ok"),
        ],
    )
    said, own = demo_panel.split_prompt(prompt)
    assert [(s.name, s.role, s.text) for s in said] == [
        ("PM", "moderator", "Ship it.\nDECISION: ship\nPOSITION: agree — yes"),
        ("Specialist", "expert", "ok"),
    ]
    assert "DECISION" not in demo_panel.instructions_of(prompt)
    assert own[-1] == "Your turn, QA."
    reply = demo_panel.reply(seat_of("QA"), prompt, 2)
    assert "DECISION:" not in reply and "POSITION:" not in reply  # another's marker asks nothing


def test_a_member_who_mentions_me_is_the_one_i_answer() -> None:
    said = [
        message("PM", "Scope is fine.", 1),
        message("Specialist", "@QA, what do we test first?", 2),
    ]
    prompt = prompts.catch_up(CONFIG, MEMBERS[1], said)
    for seed in map(str, range(8)):
        first = demo_panel.reply(seat_of("QA"), prompt, 2, seed).splitlines()[0]
        assert first.startswith("Specialist") or first.startswith("On what Specialist said")
        assert '"QA, what do we test first?"' in first  # quoted without its @


def test_quotes_never_carry_a_mention_a_marker_or_more_than_ten_words() -> None:
    text = "@PM DECISION: we ship the whole thing now, all eleven words of it and more. Then"
    quote = demo_panel.fragment(text)
    assert "@" not in quote and "DECISION" not in quote
    assert quote == "PM we ship the whole thing now, all eleven words…"
    assert demo_panel.fragment('PM, you said "x" — ok\nThe real point.') == "The real point."


def test_markers_an_owner_and_a_decision_come_at_sensible_moments() -> None:
    seat = seat_of("PM")
    replies = [demo_panel.reply(seat, "Your turn, PM.", turn) for turn in range(1, 7)]
    found = [line for text in replies for line in insights.marked_lines(text)]
    kinds = Counter(line.kind for line in found)
    assert kinds[InsightKind.INSIGHT] >= 2  # at least every third turn
    assert kinds[InsightKind.ACTION_ITEM] >= 2
    assert kinds[InsightKind.DECISION] == 0  # not before it is asked to conclude
    for item in (line.text for line in found if line.kind is InsightKind.ACTION_ITEM):
        assert insights.responsible(item, NAMES) in NAMES
    for text in replies:
        assert set(insights.mentions(text, NAMES)) <= {"QA", "Specialist"}
    last = demo_panel.reply(seat, "This is the final round: conclude.", 7)
    [decision] = [x for x in insights.marked_lines(last) if x.kind is InsightKind.DECISION]
    assert decision.text


def test_the_stance_colours_every_turn() -> None:
    for member in MEMBERS:
        seat = seat_of(member.name)
        for turn in range(1, 4):
            text = demo_panel.reply(seat, f"Your turn, {member.name}.", turn)
            for stance, lines in STANCE_LINES.items():
                said = any(line in text for line in lines)
                assert said is (stance == member.stance), (member.name, stance, text)


def positions(stance: Stance | None, *, veto: bool, seeds: int = 40) -> Counter[Position]:
    config = PanelConfig(
        topic="T", members=[MemberSpec(name="QA", stance=stance), MemberSpec(name="PM")]
    )
    request = position_request("Adopt the queue for billing.", veto=veto)
    found: Counter[Position] = Counter()
    for seed in range(seeds):
        text = demo_panel.reply(seat_of("QA", config), request, 2, str(seed))
        assert len(text.splitlines()) == 1 and text.startswith("POSITION: ")
        parsed = parse_position(text)
        assert parsed is not None, text
        assert "Adopt the queue for billing" in parsed[1]
        found[parsed[0]] += 1
    return found


def test_positions_follow_the_stance_and_veto_only_when_offered() -> None:
    agreeing = {Position.AGREE, Position.AGREE_WITH_CONDITIONS}
    assert set(positions(Stance.FOR, veto=True)) == agreeing
    against = positions(Stance.AGAINST, veto=True)
    assert set(against) == {Position.DISAGREE, Position.VETO}
    assert set(positions(Stance.AGAINST, veto=False)) == {Position.DISAGREE}
    neutral = positions(Stance.NEUTRAL, veto=True)
    assert neutral[Position.ABSTAIN] > 0 and len(neutral) >= 3
    assert set(positions(None, veto=True)) <= agreeing


def test_the_moderator_names_who_is_next_from_the_choices_it_was_given() -> None:
    config = PanelConfig(
        topic="T",
        members=MEMBERS,
        moderator="PM",
        speaker_policy=SpeakerPolicy.MODERATOR,
    )
    first = prompts.first_prompt(config, MEMBERS[0])
    seat = seat_of("PM", config)
    for seed in map(str, range(6)):
        text = demo_panel.reply(seat, first, 1, seed)
        [chosen] = [x.removeprefix("NEXT: ") for x in text.splitlines() if x.startswith("NEXT:")]
        assert chosen in ("QA", "Specialist")
        asked = [x[1:].split(",")[0] for x in text.splitlines() if x.startswith("@")]
        assert asked in ([], [chosen])  # the one it asked a question, if any
    not_moderator = prompts.first_prompt(config, MEMBERS[1])
    assert "NEXT:" not in demo_panel.reply(seat_of("QA", config), not_moderator, 1)


def test_a_review_ranks_every_response_shown() -> None:
    answers = [message(n, f"answer of {n}", i) for i, n in enumerate(NAMES)]
    prompt, label_map = prompts.review(CONFIG, MEMBERS[1], answers, random.Random(3))
    text = demo_panel.reply(seat_of("QA"), prompt, 2)
    assert sorted(prompts.parse_ranking(text, label_map) or []) == ["PM", "Specialist"]
    assert len(text.splitlines()) == 3  # the ranking, then one reason per response


def test_the_same_conversation_gets_the_same_words_and_a_seed_changes_them() -> None:
    seat = seat_of("Specialist")
    one = [demo_panel.reply(seat, "Your turn, Specialist.", t, "a") for t in range(1, 6)]
    again = [demo_panel.reply(seat, "Your turn, Specialist.", t, "a") for t in range(1, 6)]
    other = [demo_panel.reply(seat, "Your turn, Specialist.", t, "b") for t in range(1, 6)]
    assert one == again
    assert one != other
    assert len(set(one)) == len(one)  # it varies from turn to turn
