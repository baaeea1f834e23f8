"""Every --until condition, run by the real daemon's orchestrator on demo members: each alone
and two combined stop the panel with their own stop_reason, and the final analytics written
equal those recomputed from the message log on disk."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelAction,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    ParticipantRole,
    StopReason,
)
from agentplex.supervisor.panels import analytics, insights
from agentplex.supervisor.panels.store import PanelStore

DEADLINE = 60.0
"""Demo members on a loaded 2-core machine: generous, never slept away."""
EXPERT = ParticipantRole.EXPERT
TURN_COST = 0.01
"""Dollars each demo turn reports (``AGENTPLEX_DEMO_COST``), for the cost budget."""


@pytest.fixture
def costly(short_tmp: Path) -> Iterator[DaemonProcess]:
    """A daemon whose demo members report ``TURN_COST`` a turn."""
    d = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_DEMO_COST": str(TURN_COST)})
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log_lines[-5:]


def members(moderated: bool = False) -> list[MemberSpec]:
    return [
        MemberSpec(
            name=name,
            persona=persona,
            backend="demo",
            role=ParticipantRole.MODERATOR
            if moderated and name == "PM"
            else ParticipantRole.EXPERT,
        )
        for name, persona in (("PM", "pm"), ("QA", "qa"), ("Spec", "specialist"))
    ]


def config(*until: str, topic: str = "Ship the beta on Friday?", **kw: object) -> PanelConfig:
    return PanelConfig(topic=topic, members=members(), until=list(until), **kw)  # type: ignore[arg-type]


def run_to_end(client: Client, cfg: PanelConfig, say: str | None = None) -> PanelInfo:
    """Create the panel (``say`` posted as a human after its first message) and wait for
    its end."""
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(cfg)
        if say is not None:
            next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
            client.panel_say(info.id, say)
        ended = next_event(
            events, lambda e: isinstance(e, p.PanelEnded) and e.panel_id == info.id, DEADLINE
        )
    assert isinstance(ended, p.PanelEnded)
    assert ended.panel.stop_reason is ended.stop_reason
    return ended.panel


def said(daemon: DaemonProcess, panel_id: str) -> list[PanelMessage]:
    """The members' messages as the log on disk holds them (no system lines, no humans)."""
    loaded = PanelStore(daemon.state_dir / "panels").load(panel_id)
    names = {m.name for m in loaded.config.members}
    return [
        m
        for m in loaded.messages
        if m.participant in names and m.type is not MessageType.SYSTEM and not m.interrupted
    ]


def assert_analytics_from_log(daemon: DaemonProcess, panel_id: str) -> None:
    """``analytics/final_analytics.json`` is what ``analytics.compute`` makes of the log."""
    folder = daemon.state_dir / "panels" / panel_id
    loaded = PanelStore(daemon.state_dir / "panels").load(panel_id)
    names = [m.name for m in loaded.config.members]
    found = [
        i
        for m in loaded.messages
        for i in insights.capture(m, loaded.config.markers, names, now=m.ts)
    ]
    expected = analytics.compute(loaded.messages, loaded.decisions, found, names)
    written = json.loads((folder / "analytics" / "final_analytics.json").read_bytes())
    assert written == json.loads(analytics.encode(expected))


def tokens(message: PanelMessage) -> int:
    assert message.usage is not None
    return message.usage.input_tokens + message.usage.output_tokens


def test_rounds_alone_stops_after_that_many_rounds(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config("rounds=1"))
    assert info.stop_reason is StopReason.MAX_ROUNDS
    assert [m.participant for m in said(costly, info.id)] == ["PM", "QA", "Spec"]
    assert_analytics_from_log(costly, info.id)


def test_messages_alone_stops_at_that_many_member_messages(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config("messages=2"))
    assert info.stop_reason is StopReason.MAX_MESSAGES
    assert [m.participant for m in said(costly, info.id)] == ["PM", "QA"]
    assert_analytics_from_log(costly, info.id)


def test_tokens_alone_stops_once_the_members_tokens_reach_the_budget(
    costly: DaemonProcess,
) -> None:
    with costly.client() as client:  # find what one turn costs in tokens, then budget two
        first = run_to_end(client, config("messages=1"))
        budget = tokens(said(costly, first.id)[0]) + 1
        info = run_to_end(client, config(f"tokens={budget}"))
    assert info.stop_reason is StopReason.TOKEN_BUDGET
    spoken = said(costly, info.id)
    assert sum(tokens(m) for m in spoken) >= budget > sum(tokens(m) for m in spoken[:-1])
    assert info.usage.input_tokens + info.usage.output_tokens >= budget
    assert_analytics_from_log(costly, info.id)


def test_cost_alone_stops_once_the_members_cost_reaches_the_budget(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config(f"cost={TURN_COST * 2.5}"))
    assert info.stop_reason is StopReason.COST_BUDGET
    spoken = said(costly, info.id)
    assert [m.usage.cost_usd for m in spoken if m.usage] == pytest.approx([TURN_COST] * 3)
    assert_analytics_from_log(costly, info.id)


def test_a_marker_alone_stops_at_the_first_message_carrying_it(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config("marker=INSIGHT:"))
    assert info.stop_reason is StopReason.MARKER
    spoken = said(costly, info.id)
    carrying = [m for m in spoken if "INSIGHT:" in m.text]
    assert carrying and carrying[0] is spoken[-1]  # it stopped at the first one
    assert_analytics_from_log(costly, info.id)


def test_the_moderators_verdict_stops_the_panel(costly: DaemonProcess) -> None:
    moderated = PanelConfig(
        topic="Ship the beta on Friday?",
        members=members(moderated=True),
        moderator="PM",
        until=["verdict"],
    )
    with costly.client() as client:
        info = run_to_end(client, moderated, say="We are out of time: please wrap up.")
    assert info.stop_reason is StopReason.MODERATOR_VERDICT
    last = said(costly, info.id)[-1]
    assert last.participant == "PM" and "VERDICT: stop" in last.text
    assert_analytics_from_log(costly, info.id)


def test_an_end_request_stops_with_its_own_reason(costly: DaemonProcess) -> None:
    with costly.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(config("rounds=500"))
        next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
        ended = client.panel_control(info.id, PanelAction.END)
    assert ended.stop_reason is StopReason.ENDED_BY_REQUEST
    assert_analytics_from_log(costly, info.id)


def test_every_member_failing_stops_the_panel_as_members_gone(costly: DaemonProcess) -> None:
    with costly.client() as client:  # the demo dies mid-reply on CRASH: every member does
        info = run_to_end(client, config("rounds=5", topic="CRASH the beta on Friday?"))
        assert info.stop_reason is StopReason.MEMBERS_GONE
        assert not any(m.active for m in info.members)
        assert said(costly, info.id) == []
        for member in info.members:
            assert member.session_id is not None
            assert client.inspect(member.session_id).status.ended
    assert_analytics_from_log(costly, info.id)


def test_and_stops_only_when_both_hold_with_the_last_terms_reason(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config("messages=4 and rounds=2"))
    assert info.stop_reason is StopReason.MAX_ROUNDS
    assert len(said(costly, info.id)) == 6  # four messages were not enough: round 2 ended
    assert_analytics_from_log(costly, info.id)


def test_or_stops_on_whichever_holds_first(costly: DaemonProcess) -> None:
    with costly.client() as client:
        info = run_to_end(client, config("rounds=5 or messages=2"))
    assert info.stop_reason is StopReason.MAX_MESSAGES
    assert len(said(costly, info.id)) == 2
    assert_analytics_from_log(costly, info.id)


def test_wall_clock_stops_a_slow_members_turn_on_time(short_tmp: Path) -> None:
    slow = ["env", "AGENTPLEX_DEMO_DELAY=1"]  # a reply of dozens of words: a minute or more
    daemon = start_daemon(short_tmp, "--grace", "2", wrapper=slow)
    try:
        with daemon.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
            began = time.monotonic()
            info = client.panel_create(config("time=2s or messages=1"))
            ended = next_event(
                events, lambda e: isinstance(e, p.PanelEnded) and e.panel_id == info.id, DEADLINE
            )
            took = time.monotonic() - began
            shown = client.panel_show(info.id).panel
        assert isinstance(ended, p.PanelEnded)
        assert ended.stop_reason is StopReason.WALL_CLOCK
        assert 1.9 <= took < 20, took  # not after the slow turn: its reply needs over 20 s
        assert said(daemon, info.id) == []
        speaker = next(m for m in shown.members if m.session_id is not None)
        assert speaker.spec.name == "PM"
        with daemon.client() as client:
            assert client.inspect(speaker.session_id).status.ended  # the turn was cut
        assert_analytics_from_log(daemon, info.id)
    finally:
        assert daemon.stop() == 0
