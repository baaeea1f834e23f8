"""Panels run by a real daemon, and the orchestrator's overhead read off what it wrote.

Each workload starts an isolated daemon (demo members typing with ``AGENTPLEX_DEMO_DELAY=0``,
so a turn is little more than its hand-over), its members in one mode: ``long_lived`` (the
demo's panel mode: one process per member for the whole panel, each turn written to its
stdin) or ``turn`` (``AGENTPLEX_DEMO_PANEL_MODE=turn``: one process per turn, spawned with
its prompt: the mode before, measured in the same run). It creates its panels at once,
listens on a raw SUB for their ``panel.turn_started`` and ``panel.ended`` events, and then
takes the timestamps the daemon and its members already write:

- the ``result`` chunk ending a member's turn and (turn mode) the ``process.exit`` of that
  turn's process, from the member's transcript (``participants/<name>.json`` names it);
- ``panel.turn_started`` of the next turn (its ``ts``), published just before the
  orchestrator hands the turn over;
- *handed*: the moment the next turn's prompt was given to the member's process, from its
  transcript: the ``process.spawned`` of its turn process (turn mode), else its
  ``message.in``, logged as the prompt is queued for the writer to the process's stdin;
- *received*: when the member's process had the prompt (the demo agent's own
  ``AGENTPLEX_DEMO_RECORD`` line): in turn mode that includes the Python start.

So per handover (two consecutive agent turns of one panel): *result → handed* is the
issue's figure; it is the orchestrator's own work (*result → turn started*: the reply read
off the bus at its ``result``, recorded, the stop checked, the next prompt built), plus the
hand-over (*turn started → handed*: the session started or sent its message, its process
spawned or its stdin written). The member CLI's own teardown after its result
(*result → exit*, turn mode) runs alongside and is shown apart: the next member is not kept
waiting for it. All are wall-clock (``time.time``) stamps taken on one machine.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import zmq

from agentplex import protocol as p
from agentplex.protocol.panels import MemberSpec, MessageType, PanelConfig, PanelMessage
from agentplex.protocol.transcript_io import TranscriptFile

from _harness import AgentplexDaemon, Control, log, percentile, workdir
from throughput import zmq_context

PERSONAS = ("pm", "qa", "specialist")
END_TIMEOUT = 600.0


MODES = ("long_lived", "turn")
"""The members' modes: the demo's panel mode, and one process per turn (as before it)."""
FIGURES = ("result_handed", "result_started", "started_handed", "result_received", "result_exit")


@dataclass(frozen=True)
class Workload:
    panels: int
    members: int
    rounds: int
    mode: str = "long_lived"
    word_s: float = 0.0
    """Seconds per word the demo members type (0: each reply at once, a line per delta)."""

    @property
    def label(self) -> str:
        many = "panel" if self.panels == 1 else "panels at once"
        pace = f", typing {self.word_s * 1000:g} ms/word" if self.word_s else ""
        return (
            f"{self.panels} {many} x {self.members} members x {self.rounds} rounds, "
            f"{self.mode}{pace}"
        )


@dataclass
class Member:
    """One member's turns as its transcript (and its own record) tell them."""

    results: list[float] = field(default_factory=list)
    exits: list[float] = field(default_factory=list)
    handed: dict[int, float] = field(default_factory=dict)
    """Turn number → when its prompt was given to the process (spawned with it, or sent)."""
    received: dict[int, float] = field(default_factory=dict)
    """Turn number → when the process had the prompt (the demo agent's record)."""
    per_turn: bool = False
    """One process per turn (turn mode): ``exits`` line up with ``results``."""


def config(workload: Workload, n: int) -> PanelConfig:
    members = [
        MemberSpec(name=f"M{i + 1}", persona=PERSONAS[i % len(PERSONAS)], backend="demo")
        for i in range(workload.members)
    ]
    return PanelConfig(
        topic=f"Ship the cache on Friday? (panel {n})",
        members=members,
        max_rounds=workload.rounds,
        tag="bench",
    )


def run(workload: Workload) -> dict[str, Any]:
    """One run: the panels to their end; the handover figures in ms (p50/p99 each)."""
    # the daemon passes these on to its demo members
    os.environ["AGENTPLEX_DEMO_DELAY"] = str(workload.word_s)
    os.environ["AGENTPLEX_DEMO_PANEL_MODE"] = workload.mode
    with workdir() as base:
        os.environ["AGENTPLEX_DEMO_RECORD"] = str(base / "prompts.jsonl")
        with AgentplexDaemon(base) as daemon, zmq_context() as ctx:
            control = Control(ctx, daemon.control_endpoint)
            sub = daemon.subscribe(ctx, control, p.PANEL_TOPIC)
            creates = [p.PanelCreate(config=config(workload, n)) for n in range(workload.panels)]
            replies = control.call_many(creates, 120)
            ids = [r.panel.id for r in replies if isinstance(r, p.PanelCreated)]
            started = wait_ended(sub, set(ids))
            received = read_received(base / "prompts.jsonl")
            panels = [daemon.state_dir / "panels" / pid for pid in ids]
            gaps = [g for d in panels for g in handovers(d, started, received)]
            control.close()
            sub.close()
    return summary(gaps)


def read_received(path: Path) -> dict[tuple[str, int], float]:
    """(session id, turn) → when the demo member's process had that turn's prompt."""
    lines = path.read_bytes().splitlines() if path.exists() else []
    return {(r["session"], r["turn"]): r["ts"] for r in map(json.loads, lines)}


def wait_ended(sub: zmq.Socket[bytes], ids: set[str]) -> dict[tuple[str, int], float]:
    """Read panel events until every panel in ``ids`` ended; (panel, turn) → turn started."""
    started: dict[tuple[str, int], float] = {}
    left = set(ids)
    while left:
        if not sub.poll(int(END_TIMEOUT * 1000)):
            raise TimeoutError(f"{len(left)} panels did not end within {END_TIMEOUT} s")
        _topic, payload = sub.recv_multipart()
        event = p.event_decoder.decode(payload)
        if isinstance(event, p.PanelTurnStarted):
            started[(event.panel_id, event.turn)] = event.ts
        elif isinstance(event, p.PanelEnded):
            left.discard(event.panel_id)
            log(f"panel {event.panel_id[:8]} ended: {event.stop_reason}")
    return started


def handovers(
    panel_dir: Path,
    started: dict[tuple[str, int], float],
    received: dict[tuple[str, int], float],
) -> Iterator[dict[str, float | None]]:
    """Each handover between two consecutive agent turns of one panel, in ms."""
    members = {name: read_member(path) for name, path in transcripts(panel_dir)}
    for name, session_id in sessions(panel_dir):
        members[name].received = {t: ts for (s, t), ts in received.items() if s == session_id}
    said = [m for m in read_messages(panel_dir) if m.participant in members]
    index: dict[str, int] = {}
    turns = []
    for message in said:
        k = index[message.participant] = index.get(message.participant, 0) + 1
        turns.append((message, members[message.participant], k))  # k: its session's turn
    for (a, ma, ka), (b, mb, kb) in itertools.pairwise(turns):
        if a.type is MessageType.SYSTEM or b.type is MessageType.SYSTEM:
            continue  # a failed turn: no result to measure from
        if b.turn != a.turn + 1 or (b.panel_id, b.turn) not in started:
            continue
        if ka > len(ma.results) or kb not in mb.handed:
            continue
        result, handed = ma.results[ka - 1], mb.handed[kb]
        turn_started = started[(b.panel_id, b.turn)]
        exit_ = ma.exits[ka - 1] if ma.per_turn and ka <= len(ma.exits) else None
        got = mb.received.get(kb)
        yield {
            "result_handed": (handed - result) * 1000,
            "result_started": (turn_started - result) * 1000,
            "started_handed": (handed - turn_started) * 1000,
            "result_received": (got - result) * 1000 if got is not None else None,
            "result_exit": (exit_ - result) * 1000 if exit_ is not None else None,
        }


def sessions(panel_dir: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((panel_dir / "participants").glob("*.json")):
        record = json.loads(path.read_bytes())
        if record.get("session_id"):
            yield record["name"], record["session_id"]


def transcripts(panel_dir: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((panel_dir / "participants").glob("*.json")):
        record = json.loads(path.read_bytes())
        if record.get("transcript"):
            yield record["name"], record["transcript"]


def read_messages(panel_dir: Path) -> list[PanelMessage]:
    lines = (panel_dir / "panel_messages.jsonl").read_bytes().splitlines()
    decoder = msgspec.json.Decoder(PanelMessage)
    return [m for m in map(decoder.decode, lines) if not m.interrupted]


def read_member(transcript: str) -> Member:
    member = Member()
    spawned: dict[int, float] = {}
    with TranscriptFile(transcript) as lines:
        for line in lines:
            record = p.record_decoder.decode(line)
            if isinstance(record, p.Chunk) and record.kind is p.ChunkKind.RESULT:
                member.results.append(record.ts)
            elif isinstance(record, p.ProcessExit):
                member.exits.append(record.ts)
            elif isinstance(record, p.ProcessSpawned):
                spawned[record.turn] = record.ts  # a turn process: the turn it runs
            elif isinstance(record, p.MessageIn):
                member.handed[record.turn] = record.ts
    for turn, ts in spawned.items():  # spawned with its prompt: handed when spawned
        if turn in member.handed:
            member.handed[turn] = max(member.handed[turn], ts)
    member.per_turn = len(spawned) == len(member.handed)
    return member


def summary(gaps: list[dict[str, float | None]]) -> dict[str, Any]:
    figures: dict[str, Any] = {"handovers": len(gaps)}
    for key in FIGURES:
        values = [v for gap in gaps if (v := gap[key]) is not None]
        figures[f"{key}_p50"] = percentile(values, 0.5) if values else None
        figures[f"{key}_p99"] = percentile(values, 0.99) if values else None
    return figures
