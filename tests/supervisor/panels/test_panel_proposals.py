"""A decision_making panel puts its members' ``DECISION:`` proposals to the vote itself,
against the real daemon (demo members, real processes): before the panel ends on the
marker, before the next turn, once each, and never again after a crash."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import msgspec
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    PanelType,
    RoundShape,
    Stance,
    StopReason,
)
from agentplex.supervisor.panels.proposals import proposals_in, unvoted

DEADLINE = 120.0
"""Demo members on a loaded 2-core machine: generous, never slept away."""
CONCLUDING = "Ship the beta on Friday?\nThis is the final round: conclude."
"""A topic whose second line is an instruction to every member's first turn: the demo
agent then ends its first reply with a ``DECISION:`` line."""


def deciding(topic: str = CONCLUDING, **fields: object) -> PanelConfig:
    seats = (("PM", "pm", Stance.FOR), ("QA", "qa", Stance.AGAINST), ("Spec", "specialist", None))
    members = [
        MemberSpec(name=name, persona=persona, backend="demo", stance=stance)
        for name, persona, stance in seats
    ]
    return PanelConfig(
        topic=topic, type=PanelType.DECISION_MAKING, members=members, **fields
    )  # type: ignore[arg-type]


def panel_dir(daemon: DaemonProcess, panel_id: str) -> Path:
    return daemon.state_dir / "panels" / panel_id


def logged(daemon: DaemonProcess, panel_id: str) -> list[PanelMessage]:
    data = (panel_dir(daemon, panel_id) / "panel_messages.jsonl").read_bytes()
    return [msgspec.json.decode(line, type=PanelMessage) for line in data.splitlines()]


def history(daemon: DaemonProcess, panel_id: str) -> list[Decision]:
    path = panel_dir(daemon, panel_id) / "insights" / "decision_history.json"
    return msgspec.json.decode(path.read_bytes(), type=list[Decision])


def run_to_end(client: Client, config: PanelConfig) -> tuple[str, list[p.Event]]:
    """Create the panel and collect its events up to and including ``panel.ended``."""
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(config)
        seen = []
        while True:
            event = next_event(events, lambda e: getattr(e, "panel_id", None) == info.id, DEADLINE)
            seen.append(event)
            if isinstance(event, p.PanelEnded):
                return info.id, seen


def test_a_decision_marker_that_stops_the_panel_is_voted_on_before_it_ends(
    daemon: DaemonProcess, client: Client
) -> None:
    panel_id, events = run_to_end(client, deciding(until=["marker=DECISION:"]))
    ended = events[-1]
    assert isinstance(ended, p.PanelEnded) and ended.stop_reason is StopReason.MARKER
    decided = [e.decision for e in events if isinstance(e, p.PanelDecisionEvent)]
    assert len(decided) == 1  # announced before panel.ended (the events are in order)
    decision = decided[0]
    log = logged(daemon, panel_id)
    proposer = log[0]
    assert proposer.participant == "PM" and proposer.type is MessageType.CONVERSATION
    proposal = proposals_in(deciding(), proposer)
    assert [i.id for i in proposal] == [decision.source]
    assert decision.proposal == proposal[0].text
    assert [v.participant for v in decision.votes] == ["PM", "QA", "Spec"]
    assert all(v.reason for v in decision.votes)
    # the reply, the round opened, the three positions, the outcome: nothing else
    kinds = [(m.participant, m.type) for m in log]
    assert kinds[0] == ("PM", MessageType.CONVERSATION)
    assert kinds[1] == ("system", MessageType.SYSTEM) and log[1].text.startswith("Position round")
    assert sorted(kinds[2:5]) == [(n, MessageType.POSITION) for n in ("PM", "QA", "Spec")]
    assert log[5].text.startswith("Decision on") and len(log) == 6
    assert history(daemon, panel_id) == [decision]
    tracking = json.loads(
        (panel_dir(daemon, panel_id) / "insights" / "consensus_tracking.json").read_text()
    )
    assert [t["decision_id"] for t in tracking] == [decision.id]


def test_each_members_decision_is_voted_before_the_next_round(
    daemon: DaemonProcess, client: Client
) -> None:
    config = deciding(max_rounds=2, shape=RoundShape.SIMULTANEOUS)  # all see the topic at once
    panel_id, events = run_to_end(client, config)
    ended = events[-1]
    assert isinstance(ended, p.PanelEnded) and ended.stop_reason is StopReason.MAX_ROUNDS
    log = logged(daemon, panel_id)
    proposed = [i.id for m in log for i in proposals_in(config, m)]
    assert len(proposed) == 3  # each member concluded its first round
    decisions = history(daemon, panel_id)
    assert [d.source for d in decisions] == proposed
    assert [d.proposal for d in decisions] == [
        i.text for m in log for i in proposals_in(config, m)
    ]
    outcomes = [i for i, m in enumerate(log) if m.text.startswith("Decision on")]
    talk = [(i, m.round) for i, m in enumerate(log) if m.type is MessageType.CONVERSATION]
    assert len(outcomes) == 3 and len(talk) == 6
    assert max(i for i, r in talk if r == 0) < outcomes[0]
    assert outcomes[-1] < min(i for i, r in talk if r == 1)  # all voted before round 1
    announced = [e.decision.id for e in events if isinstance(e, p.PanelDecisionEvent)]
    assert announced == [d.id for d in decisions]


def test_after_a_crash_a_recorded_vote_is_not_held_again(short_tmp: Path) -> None:
    slow = ["env", "AGENTPLEX_DEMO_DELAY=0.02"]  # the rest of the panel outlasts the kill
    first = start_daemon(short_tmp, "--grace", "2", wrapper=slow)
    try:
        with first.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
            info = client.panel_create(deciding(max_rounds=1))
            voted = next_event(
                events,
                lambda e: isinstance(e, p.PanelDecisionEvent) and e.panel_id == info.id,
                DEADLINE,
            )
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    assert isinstance(voted, p.PanelDecisionEvent)
    assert history(first, info.id)[0].source == voted.decision.source
    metadata = json.loads((panel_dir(first, info.id) / "session_metadata.json").read_text())
    assert metadata["status"] == "active"  # killed with turns to go: the restart resumes it
    second = start_daemon(short_tmp, "--grace", "2")
    try:
        with second.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
            if not client.panel_show(info.id).panel.status.ended:
                gone = lambda e: isinstance(e, p.PanelEnded) and e.panel_id == info.id  # noqa: E731
                next_event(events, gone, DEADLINE)
    finally:
        assert second.stop() == 0
    log = logged(second, info.id)
    assert len({m.id for m in log}) == len(log)
    sources = [d.source for d in history(second, info.id)]
    assert len(sources) == len(set(sources))  # the vote recorded before the crash: once
    config = deciding()
    assert sources == [i.id for m in log for i in proposals_in(config, m)]
    assert sources[0] == voted.decision.source


def message(n: int, participant: str, text: str, kind: MessageType) -> PanelMessage:
    return PanelMessage(
        id=f"abc-m{n:05d}", panel_id="abc", participant=participant, text=text, ts=1.0,
        turn=n, round=0, type=kind,
    )  # fmt: skip


def test_what_is_left_to_vote_is_read_from_the_log_minus_the_recorded_sources() -> None:
    config = deciding()
    log = [
        message(1, "PM", "We agree.\nDECISION: ship on Friday", MessageType.CONVERSATION),
        message(2, "QA", "DECISION: wait a week", MessageType.POSITION),  # a vote, no proposal
        message(3, "human", "DECISION: ship now", MessageType.CONVERSATION),  # a human's post
        message(4, "system", "DECISION: x", MessageType.SYSTEM),
        message(5, "Spec", "DECISION: flag it\nDECISION: tell support", MessageType.CONVERSATION),
    ]
    pending = unvoted(config, log, [])
    assert [(i.id, i.text) for i in pending] == [
        ("abc-m00001-i1", "ship on Friday"),
        ("abc-m00005-i1", "flag it"),
        ("abc-m00005-i2", "tell support"),
    ]
    done = Decision(
        id="d1", panel_id="abc", proposal="ship on Friday", votes=[],
        level=ConsensusLevel.UNANIMOUS, agreement=1.0, source="abc-m00001-i1",
    )  # fmt: skip
    assert [i.id for i in unvoted(config, log, [done])] == ["abc-m00005-i1", "abc-m00005-i2"]
    talking = msgspec.structs.replace(config, type=PanelType.MULTI_PERSONA)
    assert unvoted(talking, log, []) == []  # a panel that does not vote proposes nothing
    assert unvoted(msgspec.structs.replace(config, voting=False), log, []) == []
