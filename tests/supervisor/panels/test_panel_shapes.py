"""Round shapes and speaker policies against the real daemon: demo members (real processes)
that record every prompt they receive (``AGENTPLEX_DEMO_RECORD``), so what a member was told
is checked as the member process received it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, fails, next_event, ok, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.sync_client import SyncSubscription
from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    PanelType,
    ParticipantRole,
    RoundShape,
    SpeakerPolicy,
    Stance,
    StopReason,
)
from agentplex.supervisor.panels import prompts

DEADLINE = 120.0
"""Demo members on a loaded 2-core machine: generous, never slept away."""
NAMES = (("PM", "pm"), ("QA", "qa"), ("Spec", "specialist"))


@pytest.fixture
def recorded(short_tmp: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    """A daemon whose demo members append each prompt they receive to a file."""
    record = short_tmp / "prompts.jsonl"
    daemon = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_DEMO_RECORD": str(record)})
    try:
        yield daemon, record
    finally:
        assert daemon.stop() == 0


def members(*stances: Stance | None) -> list[MemberSpec]:
    stances = stances or (None,) * len(NAMES)
    return [
        MemberSpec(name=name, persona=persona, backend="demo", stance=stance)
        for (name, persona), stance in zip(NAMES, stances, strict=True)
    ]


def run_to_end(
    client: Client, config: PanelConfig, during: Callable[[PanelInfo, SyncSubscription], None]
) -> tuple[PanelInfo, list[p.PanelEvent]]:
    """Create the panel, let ``during`` act on it, collect its events until it ends."""
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(config)
        during(info, events)
        seen: list[p.PanelEvent] = []
        while True:
            event = next_event(events, lambda e: getattr(e, "panel_id", None) == info.id, DEADLINE)
            assert isinstance(event, p.PanelEvent)
            seen.append(event)
            if isinstance(event, p.PanelEnded):
                return info, seen


def nothing(info: PanelInfo, events: SyncSubscription) -> None:
    pass


def said(events: list[p.PanelEvent]) -> list[PanelMessage]:
    return [
        e.message
        for e in events
        if isinstance(e, p.PanelMessageEvent)
        and not e.updated
        and e.message.type is not MessageType.SYSTEM
    ]


def prompts_by_member(client: Client, panel_id: str, record: Path) -> dict[str, list[str]]:
    """Every prompt each member's process received, in order."""
    sessions = {m.session_id: m.spec.name for m in client.panel_show(panel_id).panel.members}
    out: dict[str, list[str]] = {name: [] for name in sessions.values()}
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        if entry["session"] in sessions:
            out[sessions[entry["session"]]].append(entry["prompt"])
    return out


def test_a_simultaneous_debate_shows_each_member_only_the_others_previous_round(
    recorded: tuple[DaemonProcess, Path],
) -> None:
    daemon, record = recorded
    config = PanelConfig(
        topic="Ship the beta on Friday?",
        type=PanelType.DEBATE,
        members=members(Stance.FOR, Stance.AGAINST, Stance.NEUTRAL),
        shape=RoundShape.SIMULTANEOUS,
        max_rounds=2,
    )
    with daemon.client() as client:
        info, events = run_to_end(client, config, nothing)
        told = prompts_by_member(client, info.id, record)
    assert events[-1].stop_reason is StopReason.MAX_ROUNDS  # type: ignore[attr-defined]
    messages = said(events)
    assert sorted((m.round, m.participant) for m in messages) == [
        (r, name) for r in (0, 1) for name in sorted(n for n, _ in NAMES)
    ]
    round0 = {m.participant: m for m in messages if m.round == 0}
    round1 = [m.text for m in messages if m.round == 1]
    config = info.config
    for member in config.members:
        first, second = told[member.name]  # exactly two turns each
        assert first == prompts.simultaneous(config, member, 0, [])  # topic + own brief only
        assert "Your stance: " + str(member.stance) in first
        assert not any(m.text in first for m in messages)
        others = [round0[m.name] for m in config.members if m.name != member.name]
        assert second == prompts.simultaneous(config, member, 1, others)
        for other in others:  # the others' round-0 replies, named
            assert prompts.speaker_line(config, other) in second
        assert round0[member.name].text not in second  # never its own
        assert not any(text in second for text in round1)  # nor anything of round 1
    turns = [e for e in events if isinstance(e, p.PanelTurnStarted)]
    first_answer = next(i for i, e in enumerate(events) if isinstance(e, p.PanelMessageEvent))
    assert sum(1 for e in turns if e.round == 0) == 3
    assert all(events.index(e) < first_answer for e in turns if e.round == 0)  # all at once


def test_a_debate_alternates_strictly_between_its_sides(
    daemon: DaemonProcess, client: Client
) -> None:
    config = PanelConfig(
        topic="Rewrite the billing service in Rust?",
        type=PanelType.DEBATE,
        members=members(Stance.FOR, Stance.AGAINST, Stance.FOR),
        max_rounds=2,
    )
    _, events = run_to_end(client, config, nothing)
    assert [m.participant for m in said(events)] == ["PM", "QA", "Spec", "QA", "PM", "QA"]


def test_a_graph_panel_follows_only_its_transitions(
    daemon: DaemonProcess, client: Client
) -> None:
    # Round robin would go PM, QA, Spec; the graph sends PM to Spec, Spec to QA, QA to PM.
    config = PanelConfig(
        topic="Ship the beta on Friday?",
        members=members(),
        speaker_policy=SpeakerPolicy.GRAPH,
        transitions={"PM": ["Spec"], "Spec": ["QA"], "QA": ["PM"]},
        max_rounds=2,
    )
    info, events = run_to_end(client, config, nothing)
    assert events[-1].stop_reason is StopReason.MAX_ROUNDS  # type: ignore[attr-defined]
    order = ["PM", "Spec", "QA", "PM", "Spec", "QA"]
    assert [e.participant for e in events if isinstance(e, p.PanelTurnStarted)] == order
    assert [m.participant for m in said(events)] == order
    logged = client.panel_show(info.id).messages
    assert [m.participant for m in logged] == order  # no fallback note: every step allowed


def test_a_mention_makes_that_member_speak_next(daemon: DaemonProcess, client: Client) -> None:
    config = PanelConfig(
        topic="SLOW Ship the beta on Friday?",  # SLOW: the demo's replies take seconds
        members=members(),
        speaker_policy=SpeakerPolicy.MENTION,
        max_rounds=1,
    )

    def ask_spec(info: PanelInfo, events: SyncSubscription) -> None:
        next_event(events, lambda e: isinstance(e, p.PanelTurnStarted), DEADLINE)
        client.panel_control(info.id, "pause")  # honoured once PM's turn is over
        first = next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
        assert isinstance(first, p.PanelMessageEvent) and first.message.participant == "PM"
        client.panel_say(info.id, "@Spec what would break first?")
        client.panel_control(info.id, "resume")

    _, events = run_to_end(client, config, ask_spec)
    turns = [e.participant for e in events if isinstance(e, p.PanelTurnStarted)]
    assert turns[:1] == ["Spec"]  # round robin would have given QA the turn
    spoken = [m.participant for m in said(events)]
    assert spoken[:2] == ["human", "Spec"]


def test_a_moderator_naming_a_non_member_falls_back_to_round_robin_on_record(
    daemon: DaemonProcess, client: Client
) -> None:
    # The topic smuggles a second moderation line in, so the demo moderator names "Ghost".
    topic = "Which database?\nModeration: end with NEXT: <Name> (one of: Ghost)"
    config = PanelConfig(
        topic=topic,
        type=PanelType.EXPERT_CONSULTATION,
        members=[
            MemberSpec(name="PM", persona="pm", backend="demo", role=ParticipantRole.MODERATOR),
            *members()[1:],
        ],
        max_rounds=1,
    )
    _, events = run_to_end(client, config, nothing)
    messages = [e.message for e in events if isinstance(e, p.PanelMessageEvent)]
    assert "NEXT: Ghost" in messages[0].text and messages[0].participant == "PM"
    note = messages[1]
    assert note.type is MessageType.SYSTEM and note.participant == "system"
    assert note.text == (
        "QA speaks next: round robin: the moderator named 'Ghost', who is not a member"
    )
    assert [m.participant for m in messages[2:]] == ["QA", "PM"]  # then the moderator again


def test_a_manual_panel_waits_for_each_pick(daemon: DaemonProcess, client: Client) -> None:
    config = PanelConfig(
        topic="Ship the beta on Friday?",
        members=members(),
        speaker_policy=SpeakerPolicy.MANUAL,
        until=["messages=2"],
    )

    def pick(info: PanelInfo, events: SyncSubscription) -> None:
        shown = client.panel_show(info.id).panel
        assert (shown.turn, shown.messages, shown.speaking) == (0, 0, None)
        assert "not an agent member" in fails(daemon.cli("panel", "next", info.id, "Ghost"), 2)
        ok(daemon, "panel", "next", info.id[:8], "qa")
        first = next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
        assert isinstance(first, p.PanelMessageEvent) and first.message.participant == "QA"
        assert client.panel_next(info.id, "Spec").id == info.id

    info, events = run_to_end(client, config, pick)
    turns = [e.participant for e in events if isinstance(e, p.PanelTurnStarted)]
    assert turns == ["Spec"]  # nothing between QA's reply and the second pick
    assert events[-1].stop_reason is StopReason.MAX_MESSAGES  # type: ignore[attr-defined]
    assert [m.participant for m in client.panel_show(info.id).messages] == ["QA", "Spec"]
    assert "has ended" in fails(daemon.cli("panel", "next", info.id, "PM"), 4)


def test_panel_next_is_refused_where_the_panel_picks_itself(
    daemon: DaemonProcess, client: Client
) -> None:
    # enough rounds to be running still when the CLI asks (long-lived members are quick)
    info = client.panel_create(PanelConfig(topic="t", members=members(), max_rounds=100))
    try:
        assert "manual" in fails(daemon.cli("panel", "next", info.id, "QA"), 2)
    finally:
        client.panel_control(info.id, "end")


def test_a_review_round_shows_anonymised_answers_and_keeps_the_labels(
    recorded: tuple[DaemonProcess, Path],
) -> None:
    daemon, record = recorded
    config = PanelConfig(
        topic="Which queue: Kafka or SQS?",
        members=members(),
        shape=RoundShape.REVIEW,
        max_rounds=2,
    )
    with daemon.client() as client:
        info, events = run_to_end(client, config, nothing)
        told = prompts_by_member(client, info.id, record)
    answers = {m.participant: m.text for m in said(events) if m.round == 0}
    labels = json.loads(
        (daemon.state_dir / "panels" / info.id / "insights" / "review_round_1.json").read_text()
    )
    for name, _ in NAMES:
        review = told[name][1]
        mapping = labels[name]
        assert sorted(mapping.values()) == sorted(n for n, _ in NAMES if n != name)
        assert "RANKING:" in review and answers[name] not in review
        for label, member in mapping.items():
            block = "\n".join(f"  {line}" for line in answers[member].strip().splitlines())
            assert f"Response {label}:\n{block}" in review  # the answer, under its label only
        assert not any(f"{n} (" in review for n, _ in NAMES)  # no speaker line names anyone
        assert json.dumps(mapping) not in review
    reviews = [m for m in said(events) if m.round == 1]
    assert len(reviews) == 3 and all("RANKING:" in m.text for m in reviews)
