"""A panel end to end against the real daemon (demo members, real processes): its log, its
events, a human's message, its end, bad input refused with nothing written, a crash."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from support import DaemonProcess, fails, next_event, ok, start_daemon

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.protocol.panels import (
    MemberSpec,
    PanelConfig,
    PanelStatus,
    RoundShape,
    StopReason,
)

DEADLINE = 120.0
"""A panel of demo members on a loaded 2-core machine: generous, never slept away."""


def demo_panel(rounds: int = 2, **fields: object) -> PanelConfig:
    members = [
        MemberSpec(name=name, persona=persona, backend="demo")
        for name, persona in (("PM", "pm"), ("QA", "qa"), ("Spec", "specialist"))
    ]
    return PanelConfig(
        topic="Ship the beta on Friday?", members=members, max_rounds=rounds, **fields
    )  # type: ignore[arg-type]


def ended(panel_id: str) -> Callable[[p.Event], bool]:
    return lambda e: isinstance(e, p.PanelEnded) and e.panel_id == panel_id


def turn_started(panel_id: str, round: int) -> Callable[[p.Event], bool]:
    return lambda e: (
        isinstance(e, p.PanelTurnStarted) and e.panel_id == panel_id and e.round == round
    )


def panel_dir(daemon: DaemonProcess, panel_id: str) -> Path:
    return daemon.state_dir / "panels" / panel_id


def logged(daemon: DaemonProcess, panel_id: str) -> list[dict[str, object]]:
    text = (panel_dir(daemon, panel_id) / "panel_messages.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_a_three_member_panel_runs_two_sequential_rounds_in_order(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(demo_panel(rounds=2))
        seen = []
        while True:
            event = next_event(events, lambda e: getattr(e, "panel_id", None) == info.id, DEADLINE)
            if isinstance(event, p.PanelMessageEvent):
                seen.append(event.message)
            if isinstance(event, p.PanelEnded):
                break
    assert event.stop_reason is StopReason.MAX_ROUNDS
    assert [m.participant for m in seen] == ["PM", "QA", "Spec"] * 2
    assert [m.round for m in seen] == [0, 0, 0, 1, 1, 1]
    assert [m.turn for m in seen] == [1, 2, 3, 4, 5, 6]
    assert all(m.text.strip() and m.latency_ms is not None for m in seen)
    on_disk = logged(daemon, info.id)
    assert [m["id"] for m in on_disk] == [m.id for m in seen]
    shown = client.panel_show(info.id)
    assert [m.id for m in shown.messages] == [m.id for m in seen]
    assert shown.panel.status is PanelStatus.COMPLETED
    assert shown.panel.stop_reason is StopReason.MAX_ROUNDS
    assert all(member.session_id for member in shown.panel.members)
    for member in shown.panel.members:  # every member's session ended with the panel
        assert client.inspect(member.session_id).status.ended
    final = json.loads(
        (panel_dir(daemon, info.id) / "analytics" / "final_analytics.json").read_text()
    )
    report = client.panel_report(info.id)
    assert json.loads(bytes(report.analytics)) == final  # recomputed from the log: the same
    assert all(name in report.markdown for name in ("PM", "QA", "Spec"))
    assert ok(daemon, "panel", "report", info.id).strip() == report.markdown.strip()


MEMBERS = ("--member", "pm:demo", "--member", "qa:demo", "--member", "specialist:demo")


def test_a_panel_made_with_the_cli_takes_a_humans_message_and_ends_on_request(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        out = ok(
            daemon, "panel", "create", "--topic", "Ship on Friday?", *MEMBERS, "--rounds", "50"
        )
        panel_id = out.strip()
        assert len(out.splitlines()) == 1  # quiet: only the id
        first = next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
        assert isinstance(first, p.PanelMessageEvent) and first.panel_id == panel_id
        ok(
            daemon,
            "panel",
            "say",
            panel_id[:8],
            "What about the migration?",
            "--reply-to",
            first.message.id,
        )
        ok(daemon, "panel", "react", panel_id, first.message.id, "+1")
        ok(daemon, "panel", "end", panel_id)
        gone = next_event(events, ended(panel_id), DEADLINE)
    assert isinstance(gone, p.PanelEnded)
    assert gone.stop_reason is StopReason.ENDED_BY_REQUEST
    shown = client.panel_show(panel_id)
    human = [m for m in shown.messages if m.participant == "human"]
    assert [(m.text, m.reply_to) for m in human] == [
        ("What about the migration?", first.message.id)
    ]
    assert [r.emoji for r in shown.messages[0].reactions] == ["+1"]
    ids = [m["id"] for m in logged(daemon, panel_id)]
    assert len(ids) == len(set(ids))  # a reaction adds no second copy of a message
    listing = ok(daemon, "panel", "ls")
    assert panel_id[:8] in listing and "completed" in listing
    text = ok(daemon, "panel", "show", panel_id)
    assert "ended_by_request" in text and "What about the migration?" in text
    watched = ok(daemon, "panel", "watch", panel_id)  # ended: the log, then it returns
    assert first.message.id in watched
    posted = daemon.cli("panel", "say", panel_id, "too late")
    assert "has ended" in fails(posted, 4)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--member", "nobody:demo", "--member", "qa:demo"), 2, "no persona named"),
        (("--member", "pm:nowhere", "--member", "qa:demo"), 2, "no backend"),
        (("--member", "pm:demo"), 2, "member"),
        (tuple(a for i in range(9) for a in ("--member", f"pm{i}:demo")), 2, "member"),
        ((*MEMBERS, "--moderator", "ghost"), 2, "ghost"),
        (("--type", "brainstorm", "--member", "pm:demo@for", "--member", "qa:demo"), 2, "stance"),
        ((*MEMBERS, "--until", "rounds=soon"), 2, "rounds=soon"),
        ((*MEMBERS, "--shape", "simultaneous", "--policy", "mention"), 2, "one speaker at a"),
    ],
    ids=[
        "persona",
        "backend",
        "one-member",
        "too-many",
        "moderator",
        "stance",
        "until",
        "policy-in-parallel-rounds",
    ],
)
def test_bad_panel_input_is_refused_with_its_code_and_nothing_written(
    daemon: DaemonProcess, args: tuple[str, ...], code: int, says: str
) -> None:
    done = daemon.cli("panel", "create", "--topic", "t", *args)
    assert says in fails(done, code)
    assert not (daemon.state_dir / "panels").exists() or not any(
        (daemon.state_dir / "panels").iterdir()
    )
    assert daemon.cli("ls", "--json").stdout.strip() == "[]"  # no member was started


def test_an_unknown_panel_is_named_so(daemon: DaemonProcess) -> None:
    for verb in ("show", "end", "watch"):
        assert "no panel" in fails(daemon.cli("panel", verb, "0123abcd"), 3)
    assert "no panel" in fails(daemon.cli("panel", "say", "0123abcd", "hi"), 3)


def test_after_a_sigkill_mid_reply_the_panel_resumes_at_that_turn(short_tmp: Path) -> None:
    slow = ["env", "AGENTPLEX_DEMO_DELAY=0.05"]  # replies long enough to be cut
    first = start_daemon(short_tmp, "--grace", "2", wrapper=slow)
    try:
        with first.client() as client, client.subscribe(p.PANEL_TOPIC, p.CHUNK_TOPIC) as events:
            info = client.panel_create(demo_panel(rounds=2))
            started = next_event(events, turn_started(info.id, 1), DEADLINE)
            assert isinstance(started, p.PanelTurnStarted)
            member = next(
                m
                for m in client.panel_show(info.id).panel.members
                if m.spec.name == started.participant
            )
            assert member.session_id is not None
            next_event(
                events,
                lambda e: (
                    isinstance(e, p.Chunk | p.ChunkBatch)
                    and getattr(e, "session_id", None) == member.session_id
                ),
                DEADLINE,
            )
            pids = [s.pid for s in client.list().sessions if s.pid is not None]
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    assert pids and started.participant
    second, shown = restart_until_ended(short_tmp, info.id, pids)
    messages = shown.messages
    cut = [m for m in messages if m.interrupted]
    assert [(m.participant, m.round) for m in cut] == [(started.participant, 1)]
    spoken = [(m.participant, m.round) for m in messages if not m.interrupted]
    assert spoken == [(name, r) for r in (0, 1) for name in ("PM", "QA", "Spec")]
    assert shown.panel.stop_reason is StopReason.MAX_ROUNDS
    assert os.path.isfile(panel_dir(second, info.id) / "analytics" / "final_analytics.json")


def test_a_sigkill_mid_simultaneous_round_records_each_cut_reply_and_asks_it_again(
    short_tmp: Path,
) -> None:
    slow = ["env", "AGENTPLEX_DEMO_DELAY=0.05"]  # replies of a second or more: cut mid-word
    first = start_daemon(short_tmp, "--grace", "2", wrapper=slow)
    try:
        with first.client() as client, client.subscribe(p.PANEL_TOPIC, p.CHUNK_TOPIC) as events:
            info = client.panel_create(demo_panel(rounds=2, shape=RoundShape.SIMULTANEOUS))
            started, typing, answered = round_one_in_flight(client, events, info.id)
            pids = [s.pid for s in client.list().sessions if s.pid is not None]
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    assert pids and len(typing - answered) >= 2  # several members were cut mid-reply
    second, shown = restart_until_ended(short_tmp, info.id, pids)
    messages = shown.messages
    ids = [m.id for m in messages]
    cut = [m for m in messages if m.interrupted]
    cut_names = {m.participant for m in cut}
    assert typing - answered <= cut_names <= started  # each reply the crash cut, once
    assert len(cut) == len(cut_names) and {m.round for m in cut} == {1}
    spoken = sorted((m.round, m.participant) for m in messages if not m.interrupted)
    assert spoken == [(r, name) for r in (0, 1) for name in ("PM", "QA", "Spec")]
    for record in cut:  # asked again after its interrupted record
        again = next(m for m in messages if m.participant == record.participant and m.round == 1
                     and not m.interrupted)  # fmt: skip
        assert ids.index(again.id) > ids.index(record.id)
    assert shown.panel.stop_reason is StopReason.MAX_ROUNDS
    metadata = json.loads((panel_dir(second, info.id) / "session_metadata.json").read_text())
    assert metadata["in_flight"] == []


def round_one_in_flight(
    client: Client, events: SyncSubscription, panel_id: str
) -> tuple[set[str], set[str], set[str]]:
    """Wait until round 1 is handed to every member and at least two are typing it; the
    members it was handed to, those seen typing, and those whose reply was recorded."""
    started: set[str] = set()
    typing: set[str] = set()
    answered: set[str] = set()
    names: dict[str, str] = {}
    while len(started) < 3 or len(typing - answered) < 2:
        event = next_event(events, lambda e: True, DEADLINE)
        if isinstance(event, p.PanelTurnStarted) and event.panel_id == panel_id:
            if event.round == 1:
                started.add(event.participant)
                members = client.panel_show(panel_id).panel.members
                names = {m.session_id: m.spec.name for m in members if m.session_id}
        elif isinstance(event, p.PanelMessageEvent) and event.message.round == 1:
            answered.add(event.message.participant)
        elif isinstance(event, p.Chunk | p.ChunkBatch) and event.kind is p.ChunkKind.TEXT:
            name = names.get(event.session_id)
            if name in started:
                typing.add(name)
    return started, typing, answered


def test_pause_holds_the_next_turn_resume_goes_on_at_it_and_archive_needs_the_end(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        panel_id = ok(daemon, "panel", "create", "--topic", "Ship?", *MEMBERS).strip()
        first = next_event(events, lambda e: isinstance(e, p.PanelMessageEvent), DEADLINE)
        ok(daemon, "panel", "pause", panel_id)
        paused = client.panel_show(panel_id)
        assert paused.panel.status is PanelStatus.PAUSED
        if paused.panel.speaking is not None:  # the turn in flight may finish
            next_event(
                events,
                lambda e: (
                    isinstance(e, p.PanelMessageEvent)
                    and e.message.participant == paused.panel.speaking
                ),
                DEADLINE,
            )
        held = client.panel_show(panel_id)
        quiet = events.receive(3.0)  # replies take milliseconds: a turn would start at once
        while quiet is not None:
            # a turn started before the pause may still be buffered: none after the held one
            assert not (isinstance(quiet, p.PanelTurnStarted) and quiet.turn > held.panel.turn)
            quiet = events.receive(3.0)
        assert client.panel_show(panel_id).panel.turn == held.panel.turn
        archived = daemon.cli("panel", "archive", panel_id)
        assert "end it before archiving" in fails(archived, 2)
        ok(daemon, "panel", "resume", panel_id)
        again = next_event(events, lambda e: isinstance(e, p.PanelTurnStarted), DEADLINE)
        assert isinstance(again, p.PanelTurnStarted)
        assert again.turn == held.panel.turn + 1  # the same turn it was held at
        spoken = [m.participant for m in held.messages if m.participant != "system"]
        order = ["pm", "qa", "specialist"]  # CLI members are named for their personas
        assert again.participant == order[len(spoken) % 3]
        ok(daemon, "panel", "end", panel_id)
    assert first.panel_id == panel_id
    ok(daemon, "panel", "archive", panel_id)
    assert panel_id[:8] not in ok(daemon, "panel", "ls")
    assert "archived" in ok(daemon, "panel", "ls", "--all")
    assert "has ended" in fails(daemon.cli("panel", "resume", panel_id), 4)


def test_a_member_whose_session_ends_leaves_and_the_panel_goes_on_without_it(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(demo_panel(rounds=3))
        said = next_event(
            events,
            lambda e: isinstance(e, p.PanelMessageEvent) and e.message.participant == "QA",
            DEADLINE,
        )
        assert isinstance(said, p.PanelMessageEvent)
        qa = next(m for m in client.panel_show(info.id).panel.members if m.spec.name == "QA")
        assert qa.session_id is not None
        client.terminate(qa.session_id)
        left = next_event(events, lambda e: isinstance(e, p.PanelParticipantLeft), DEADLINE)
        next_event(events, ended(info.id), DEADLINE)
    assert isinstance(left, p.PanelParticipantLeft) and left.participant == "QA"
    shown = client.panel_show(info.id)
    assert shown.panel.stop_reason is StopReason.MAX_ROUNDS
    assert [m.active for m in shown.panel.members] == [True, False, True]
    after = [m for m in shown.messages if m.ts > said.message.ts and m.type.value != "system"]
    assert after and "QA" not in {m.participant for m in after}
    assert {m.participant for m in after} == {"PM", "Spec"}
    record = json.loads((panel_dir(daemon, info.id) / "participants" / "QA.json").read_text())
    assert record["active"] is False and record["left_reason"]


FLAKY = """
name = "flaky"
backend = "demo"
instructions = "You are a careful reviewer. (demo: EXIT1, each turn exits 1 after its reply)"
"""


def test_a_member_whose_process_fails_after_its_reply_keeps_the_reply_and_leaves(
    short_tmp: Path,
) -> None:
    personas = short_tmp / "config" / "agentplex" / "personas"
    personas.mkdir(parents=True)
    (personas / "flaky.toml").write_text(FLAKY)
    env = {"XDG_CONFIG_HOME": str(short_tmp / "config"), "AGENTPLEX_DEMO_PANEL_MODE": "turn"}
    daemon = start_daemon(short_tmp, "--grace", "2", env=env)  # a process per turn, as CLIs
    members = [
        MemberSpec(name=name, persona=persona, backend="demo")
        for name, persona in (("PM", "pm"), ("Flaky", "flaky"), ("Spec", "specialist"))
    ]
    config = PanelConfig(topic="Ship the beta on Friday?", members=members, max_rounds=3)
    try:
        with daemon.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
            info = client.panel_create(config)
            seen = [next_event(events, lambda e: getattr(e, "panel_id", None) == info.id)]
            while not isinstance(seen[-1], p.PanelEnded):
                seen.append(next_event(events, lambda e: True, DEADLINE))
            shown = client.panel_show(info.id)
    finally:
        assert daemon.stop() == 0
    left = [e for e in seen if isinstance(e, p.PanelParticipantLeft)]
    assert [e.participant for e in left] == ["Flaky"]
    assert "failed after its reply" in left[0].reason and "exit" in left[0].reason
    messages = shown.messages
    said = [(m.participant, m.round) for m in messages if m.type.value == "conversation"]
    assert said == [("PM", 0), ("Flaky", 0), ("Spec", 0), ("PM", 1), ("Spec", 1), ("PM", 2),
                    ("Spec", 2)]  # fmt: skip
    reply = next(m for m in messages if m.participant == "Flaky")
    assert reply.text.strip() and not reply.interrupted  # the reply was complete: it stands
    note = next(m for m in messages if m.reply_to == reply.id)
    assert note.participant == "system" and "Flaky's process failed after its reply" in note.text
    assert shown.panel.stop_reason is StopReason.MAX_ROUNDS
    assert [m.active for m in shown.panel.members] == [True, False, True]
    record = json.loads((panel_dir(daemon, info.id) / "participants" / "Flaky.json").read_text())
    assert record["active"] is False and "failed after its reply" in record["left_reason"]


def restart_until_ended(
    short_tmp: Path, panel_id: str, pids: list[int]
) -> tuple[DaemonProcess, p.PanelShown]:
    """Restart the daemon after a crash, wait for the panel to end; check no member process
    from before the crash survives and no message id appears twice (shown or logged)."""
    second = start_daemon(short_tmp, "--grace", "2")
    try:
        with second.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
            if not client.panel_show(panel_id).panel.status.ended:
                next_event(events, ended(panel_id), DEADLINE)
            shown = client.panel_show(panel_id)
        for pid in pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        assert second.stop() == 0
    ids = [m.id for m in shown.messages]
    assert len(ids) == len(set(ids)) == len({m["id"] for m in logged(second, panel_id)})
    return second, shown
