"""``panel decide`` against the real daemon (demo members, real processes): a position round
between two turns, each vote a POSITION message, the decision and its consensus level in
their files, on the bus and in the report; a human's veto; refusals with nothing written."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from support import DaemonProcess, fails, next_event, ok

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.errors import AgentplexError
from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    MemberSpec,
    MessageType,
    PanelConfig,
    ParticipantKind,
    Position,
    Stance,
)

DEADLINE = 120.0
"""Demo members on a loaded 2-core machine: generous, never slept away."""
AGREEING = {Position.AGREE, Position.AGREE_WITH_CONDITIONS}
PROPOSAL = "Ship the beta on Friday behind a feature flag"


def stanced_panel(*stances: Stance, humans: tuple[str, ...] = ()) -> PanelConfig:
    """Demo members PM, QA, Spec (in that order) holding ``stances``; a long discussion."""
    seats = (("PM", "pm"), ("QA", "qa"), ("Spec", "specialist"))
    members = [
        MemberSpec(name=name, persona=persona, backend="demo", stance=stance)
        for (name, persona), stance in zip(seats, stances, strict=False)
    ]
    members += [MemberSpec(name=name, kind=ParticipantKind.HUMAN) for name in humans]
    return PanelConfig(topic="Ship the beta on Friday?", members=members, max_rounds=50)


def of_panel(panel_id: str, kind: type[p.Event]) -> Callable[[p.Event], bool]:
    return lambda e: isinstance(e, kind) and getattr(e, "panel_id", None) == panel_id


def panel_dir(daemon: DaemonProcess, panel_id: str) -> Path:
    return daemon.state_dir / "panels" / panel_id


def logged(daemon: DaemonProcess, panel_id: str) -> list[dict[str, object]]:
    text = (panel_dir(daemon, panel_id) / "panel_messages.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def decision_file(daemon: DaemonProcess, panel_id: str) -> list[Decision]:
    path = panel_dir(daemon, panel_id) / "insights" / "decision_history.json"
    return msgspec.json.decode(path.read_bytes(), type=list[Decision])


def test_two_for_and_one_against_is_a_simple_majority_recorded_between_turns(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(stanced_panel(Stance.FOR, Stance.AGAINST, Stance.FOR))
        next_event(events, of_panel(info.id, p.PanelMessageEvent), DEADLINE)  # talk began
        decided = client.panel_decide(info.id, PROPOSAL, timeout=DEADLINE).decision
        event = next_event(events, of_panel(info.id, p.PanelDecisionEvent), DEADLINE)
        # the discussion goes on after the round, in its order
        next_event(
            events,
            lambda e: of_panel(info.id, p.PanelMessageEvent)(e)
            and e.message.type is MessageType.CONVERSATION  # type: ignore[attr-defined]
            and e.message.ts > decided.ts,  # type: ignore[attr-defined]
            DEADLINE,
        )
    assert decided.level is ConsensusLevel.SIMPLE_MAJORITY
    assert round(decided.agreement, 3) == 0.667
    assert [v.participant for v in decided.votes] == ["PM", "QA", "Spec"]
    assert decided.votes[0].position in AGREEING and decided.votes[2].position in AGREEING
    assert decided.votes[1].position is Position.DISAGREE
    assert all(v.reason for v in decided.votes)
    assert decided.proposal == PROPOSAL
    assert isinstance(event, p.PanelDecisionEvent) and event.decision == decided

    assert decision_file(daemon, info.id) == [decided]
    tracking = json.loads(
        (panel_dir(daemon, info.id) / "insights" / "consensus_tracking.json").read_text()
    )
    assert [(t["decision_id"], t["level"], t["counted"]) for t in tracking] == [
        (decided.id, "simple_majority", 3)
    ]
    assert round(tracking[0]["agreement"], 3) == 0.667

    log = logged(daemon, info.id)
    opened = next(i for i, m in enumerate(log) if str(m["text"]).startswith("Position round"))
    closed = next(i for i, m in enumerate(log) if str(m["text"]).startswith("Decision on"))
    between = log[opened + 1 : closed]  # not interleaved with any member's turn
    assert sorted(m["participant"] for m in between) == ["PM", "QA", "Spec"]
    assert {m["type"] for m in between} == {"position"}
    assert len({m["id"] for m in log}) == len(log)
    # positions are no turns: round robin carries on in its order around them
    talk = [m["participant"] for m in log if m["type"] == "conversation"]
    assert talk == ["PM", "QA", "Spec"] * (len(talk) // 3) + ["PM", "QA", "Spec"][: len(talk) % 3]

    report = client.panel_report(info.id).markdown
    assert PROPOSAL in report and "simple majority" in report
    assert "simple majority" in ok(daemon, "panel", "report", info.id)
    ok(daemon, "panel", "end", info.id)


def test_all_for_is_unanimous_from_the_cli(daemon: DaemonProcess, client: Client) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(stanced_panel(Stance.FOR, Stance.FOR, Stance.FOR))
        next_event(events, of_panel(info.id, p.PanelMessageEvent), DEADLINE)
        out = ok(daemon, "panel", "decide", info.id[:8], PROPOSAL)
        as_json = ok(daemon, "panel", "decide", info.id, "Write the release notes", "--json")
    assert out.splitlines()[0].startswith("unanimous (agreement 1.000)")
    assert [line.split(":")[0].strip() for line in out.splitlines()[1:4]] == ["PM", "QA", "Spec"]
    second = p.reply_decoder.decode(as_json.encode())
    assert isinstance(second, p.PanelDecided)
    assert second.decision.level is ConsensusLevel.UNANIMOUS
    history = decision_file(daemon, info.id)
    assert [d.proposal for d in history] == [PROPOSAL, "Write the release notes"]
    assert all(d.level is ConsensusLevel.UNANIMOUS and d.agreement == 1.0 for d in history)
    ok(daemon, "panel", "end", info.id)


def test_a_human_members_veto_when_offered_is_a_conflict(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(stanced_panel(Stance.FOR, Stance.FOR, humans=("Ana",)))
        next_event(events, of_panel(info.id, p.PanelMessageEvent), DEADLINE)
        result: list[Decision | BaseException] = []

        def decide() -> None:
            with daemon.client(timeout=DEADLINE) as other:
                try:
                    result.append(
                        other.panel_decide(info.id, PROPOSAL, veto=True, human_wait_s=DEADLINE)
                        .decision
                    )
                except BaseException as exc:  # handed to the test's thread
                    result.append(exc)

        voter = threading.Thread(target=decide)
        voter.start()
        try:
            next_event(
                events,
                lambda e: of_panel(info.id, p.PanelMessageEvent)(e)
                and e.message.text.startswith("Position round"),  # type: ignore[attr-defined]
                DEADLINE,
            )
            client.panel_say(info.id, "POSITION: veto — not on a Friday", participant="Ana")
        finally:
            voter.join(DEADLINE)
    assert not voter.is_alive()
    decided = result[0]
    assert isinstance(decided, Decision), decided
    assert decided.level is ConsensusLevel.CONFLICT
    assert [(v.participant, v.position in AGREEING) for v in decided.votes[:2]] == [
        ("PM", True),
        ("QA", True),
    ]
    assert (decided.votes[2].participant, decided.votes[2].position) == ("Ana", Position.VETO)
    assert decided.votes[2].reason == "not on a Friday"
    ok(daemon, "panel", "end", info.id)


def test_decide_refuses_an_empty_proposal_and_an_ended_panel_writing_nothing(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(stanced_panel(Stance.FOR, Stance.AGAINST))
        next_event(events, of_panel(info.id, p.PanelMessageEvent), DEADLINE)
        assert "empty" in fails(daemon.cli("panel", "decide", info.id, "  "), 2)
        with pytest.raises(AgentplexError) as empty:
            client.panel_decide(info.id, "")
        assert empty.value.code == "empty_prompt"
        ok(daemon, "panel", "end", info.id)
        next_event(events, of_panel(info.id, p.PanelEnded), DEADLINE)
    line = fails(daemon.cli("panel", "decide", info.id, PROPOSAL), 4)
    assert "has ended" in line
    with pytest.raises(AgentplexError) as ended:
        client.panel_decide(info.id, PROPOSAL)
    assert ended.value.code == "panel_ended"
    assert "no panel" in fails(daemon.cli("panel", "decide", "0123abcd", PROPOSAL), 3)
    assert not (panel_dir(daemon, info.id) / "insights" / "decision_history.json").exists()
    assert all(m["type"] != "position" for m in logged(daemon, info.id))
