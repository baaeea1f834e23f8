"""Panels run by a real daemon, and the orchestrator's overhead read off what it wrote.

Each workload starts an isolated daemon (demo members typing with ``AGENTPLEX_DEMO_DELAY=0``,
so a turn is little more than a process start), creates its panels at once, listens on a
raw SUB for their ``panel.turn_started`` and ``panel.ended`` events, and then takes the
timestamps the daemon already writes:

- the ``result`` chunk ending a member's turn and the ``process.exit`` of that turn's
  process, from the member's transcript (``participants/<name>.json`` names it);
- ``panel.turn_started`` of the next turn (its ``ts``), published just before the
  orchestrator hands the turn over;
- ``process.spawned`` of the next member's turn process, from its transcript.

So per handover (two consecutive agent turns of one panel): *result → next spawned* is the
issue's figure; it is the orchestrator's own work (*result → turn started*: the reply read
off the bus at its ``result``, recorded, the stop checked, the next prompt built), plus the
handover (*turn started → spawned*: the session started or sent its message, its process
spawned). The member CLI's own teardown after its result (*result → exit*) runs alongside
and is shown apart: the next member is not kept waiting for it. All are wall-clock
(``time.time``) stamps taken by the one daemon process, so they compare directly.
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


@dataclass(frozen=True)
class Workload:
    panels: int
    members: int
    rounds: int

    @property
    def label(self) -> str:
        many = "panel" if self.panels == 1 else "panels at once"
        return f"{self.panels} {many} x {self.members} members x {self.rounds} rounds"


@dataclass
class Member:
    """One member's turns as its transcript tells them, in order."""

    results: list[float] = field(default_factory=list)
    exits: list[float] = field(default_factory=list)
    spawns: list[float] = field(default_factory=list)


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
    os.environ["AGENTPLEX_DEMO_DELAY"] = "0"  # the daemon passes it on to its demo members
    with workdir() as base, AgentplexDaemon(base) as daemon, zmq_context() as ctx:
        control = Control(ctx, daemon.control_endpoint)
        sub = daemon.subscribe(ctx, control, p.PANEL_TOPIC)
        creates = [p.PanelCreate(config=config(workload, n)) for n in range(workload.panels)]
        replies = control.call_many(creates, 120)
        ids = [r.panel.id for r in replies if isinstance(r, p.PanelCreated)]
        started = wait_ended(sub, set(ids))
        gaps = [g for pid in ids for g in handovers(daemon.state_dir / "panels" / pid, started)]
        control.close()
        sub.close()
    return summary(gaps)


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
    panel_dir: Path, started: dict[tuple[str, int], float]
) -> Iterator[dict[str, float]]:
    """Each handover between two consecutive agent turns of one panel, in ms."""
    members = {name: read_member(path) for name, path in transcripts(panel_dir)}
    said = [m for m in read_messages(panel_dir) if m.participant in members]
    index: dict[str, int] = {}
    turns = []
    for message in said:
        k = index[message.participant] = index.get(message.participant, -1) + 1
        turns.append((message, members[message.participant], k))
    for (a, ma, ka), (b, mb, kb) in itertools.pairwise(turns):
        if a.type is MessageType.SYSTEM or b.type is MessageType.SYSTEM:
            continue  # a failed turn: no result to measure from
        if b.turn != a.turn + 1 or (b.panel_id, b.turn) not in started:
            continue
        if ka >= len(ma.results) or ka >= len(ma.exits) or kb >= len(mb.spawns):
            continue
        result, exit_, spawn = ma.results[ka], ma.exits[ka], mb.spawns[kb]
        turn_started = started[(b.panel_id, b.turn)]
        yield {
            "result_spawn": (spawn - result) * 1000,
            "result_exit": (exit_ - result) * 1000,
            "result_started": (turn_started - result) * 1000,
            "started_spawn": (spawn - turn_started) * 1000,
        }


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
    with TranscriptFile(transcript) as lines:
        for line in lines:
            record = p.record_decoder.decode(line)
            if isinstance(record, p.Chunk) and record.kind is p.ChunkKind.RESULT:
                member.results.append(record.ts)
            elif isinstance(record, p.ProcessExit):
                member.exits.append(record.ts)
            elif isinstance(record, p.ProcessSpawned):
                member.spawns.append(record.ts)
    return member


def summary(gaps: list[dict[str, float]]) -> dict[str, Any]:
    figures: dict[str, Any] = {"handovers": len(gaps)}
    for key in ("result_spawn", "result_exit", "result_started", "started_spawn"):
        values = [gap[key] for gap in gaps]
        figures[f"{key}_p50"] = percentile(values, 0.5) if values else None
        figures[f"{key}_p99"] = percentile(values, 0.99) if values else None
    return figures
