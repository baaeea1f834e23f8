"""A member's turn ends at its ``result``, not at its process's exit: against the real daemon
with demo members (real processes) that stay ``AGENTPLEX_DEMO_LINGER`` seconds after their
result, as a real CLI's own exit takes a while, in turn mode (one process per turn,
``AGENTPLEX_DEMO_PANEL_MODE=turn``). In their own (long-lived) panel mode each demo member is
one process, started before the first turn and handed every turn on its stdin. Each
member's transcript proves the handover."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    PanelType,
    RoundShape,
    StopReason,
)
from agentplex.protocol.records import MessageIn, ProcessExit, ProcessSpawned, Record

DEADLINE = 120.0
"""Demo members on a loaded 2-core machine: generous, never slept away."""
LINGER = 3.0
"""Seconds each demo member's process stays after its result: far beyond a handover's ms."""
NAMES = ("PM", "QA")


@pytest.fixture
def lingering(short_tmp: Path) -> Iterator[DaemonProcess]:
    env = {"AGENTPLEX_DEMO_LINGER": str(LINGER), "AGENTPLEX_DEMO_PANEL_MODE": "turn"}
    daemon = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0


def run_panel(daemon: DaemonProcess) -> tuple[list[PanelMessage], dict[str, str]]:
    """A two-member, two-round sequential panel to its end: what was said, and the
    transcript of each member's session by member name."""
    config = PanelConfig(
        topic="Ship the beta on Friday?",
        type=PanelType.MULTI_PERSONA,
        members=[MemberSpec(name=n, persona=n.lower(), backend="demo") for n in NAMES],
        shape=RoundShape.SEQUENTIAL,
        max_rounds=2,
    )
    with daemon.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(config)
        said: list[PanelMessage] = []
        while True:
            event = next_event(events, lambda e: getattr(e, "panel_id", None) == info.id, DEADLINE)
            if isinstance(event, p.PanelMessageEvent) and not event.updated:
                said.append(event.message)
            if isinstance(event, p.PanelEnded):
                assert event.stop_reason is StopReason.MAX_ROUNDS, event
                break
        members = client.panel_show(info.id).panel.members
        sessions = {s.id: s.transcript for s in client.list(all=True).sessions}
    transcripts = {m.spec.name: sessions[m.session_id] for m in members if m.session_id}
    return [m for m in said if m.type is not MessageType.SYSTEM], transcripts


def processes(transcript: str) -> list[tuple[float, float]]:
    """Each turn's process of one session: (spawned ts, exit ts), in order."""
    decoder = msgspec.json.Decoder(Record)
    spawned: dict[int, float] = {}
    lives: list[tuple[float, float]] = []
    for line in Path(transcript).read_bytes().splitlines():
        record = decoder.decode(line)
        if isinstance(record, ProcessSpawned):
            spawned[record.pid] = record.ts
        elif isinstance(record, ProcessExit):
            lives.append((spawned[record.pid], record.ts))
    return lives


def test_the_next_member_is_handed_its_turn_before_the_previous_members_process_exits(
    lingering: DaemonProcess,
) -> None:
    said, transcripts = run_panel(lingering)

    # every turn gave its reply: the member's second turn, sent while its first turn's
    # process was still lingering, was queued by its session and delivered, never lost
    assert [(m.round, m.participant) for m in said] == [(r, n) for r in (0, 1) for n in NAMES]
    assert all(m.text.strip() and m.latency_ms is not None for m in said), said
    pm, qa = (processes(transcripts[n]) for n in NAMES)
    assert len(pm) == len(qa) == 2  # one process per turn, each ended
    # the order of turns: PM0, QA0, PM1, QA1; each next member's process was spawned while
    # the previous one's was still lingering after its result
    order = [pm[0], qa[0], pm[1], qa[1]]
    for previous, following in itertools.pairwise(order):
        assert following[0] < previous[1], (previous, following)
    # a member's own turns never overlap: its next turn waited in its session's queue
    for lives in (pm, qa):
        assert lives[0][1] <= lives[1][0], lives


def records(transcript: str) -> list[Record]:
    decoder = msgspec.json.Decoder(Record)
    return [decoder.decode(line) for line in Path(transcript).read_bytes().splitlines()]


def test_long_lived_members_are_started_before_the_first_turn_and_fed_each_turn_on_stdin(
    daemon: DaemonProcess,
) -> None:
    with daemon.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
        config = PanelConfig(
            topic="Ship the beta on Friday?",
            members=[MemberSpec(name=n, persona=n.lower(), backend="demo") for n in NAMES],
            max_rounds=2,
        )
        info = client.panel_create(config)
        first = next_event(events, lambda e: isinstance(e, p.PanelTurnStarted), DEADLINE)
        next_event(events, lambda e: isinstance(e, p.PanelEnded), DEADLINE)
        shown = client.panel_show(info.id)
        sessions = {s.id: s for s in client.list(all=True).sessions}
    said = [m for m in shown.messages if m.type is not MessageType.SYSTEM]
    assert [(m.round, m.participant) for m in said] == [(r, n) for r in (0, 1) for n in NAMES]
    assert isinstance(first, p.PanelTurnStarted)
    for member in shown.panel.members:
        assert member.session_id is not None
        session = sessions[member.session_id]
        assert session.mode is p.BackendMode.LONG_LIVED
        lines = records(session.transcript)
        spawned = [r for r in lines if isinstance(r, ProcessSpawned)]
        sent = [r for r in lines if isinstance(r, MessageIn)]
        assert len(spawned) == 1, spawned  # one process for the whole panel
        assert spawned[0].ts < first.ts  # up before the first turn was handed out
        assert [m.turn for m in sent] == [1, 2]  # each turn a message to that process
        assert all(m.ts > spawned[0].ts for m in sent)
        exits = [r for r in lines if isinstance(r, ProcessExit)]
        assert len(exits) == 1 and exits[0].ts > sent[-1].ts  # ended with the panel
