"""Transcript records: one JSON object per line of a session's ``.jsonl`` transcript.
Chunks are records too, byte for byte as they were published."""

from __future__ import annotations

from agentplex.protocol.enums import SessionStatus
from agentplex.protocol.events import Chunk, ChunkBatch
from agentplex.protocol.values import PROTOCOL_VERSION, Tagged, Usage


class Header(Tagged, frozen=True, tag="header"):
    """First line of every transcript."""

    session_id: str
    backend: str
    persona: str | None
    tag: str | None
    argv: list[str]
    cwd: str
    started_at: float
    protocol: int = PROTOCOL_VERSION


class MessageIn(Tagged, frozen=True, tag="message.in"):
    """A message a person or program sent to the session."""

    text: str
    ts: float
    turn: int


class ProcessSpawned(Tagged, frozen=True, tag="process.spawned"):
    pid: int
    argv: list[str]
    ts: float
    turn: int


class ProcessExit(Tagged, frozen=True, tag="process.exit"):
    """A session process ended: ``code`` when it exited, ``signal`` when a signal killed it."""

    pid: int
    ts: float
    code: int | None = None
    signal: int | None = None


class Recovered(Tagged, frozen=True, tag="daemon.recovered"):
    """Written when a restarted daemon takes a session back after a crash."""

    ts: float
    previous: SessionStatus
    status: SessionStatus
    damaged_lines: int = 0


class Footer(Tagged, frozen=True, tag="footer"):
    """Last line of a finished transcript."""

    ts: float
    status: SessionStatus
    reason: str
    chunks: int
    turns: int
    usage: Usage = Usage()


Record = Header | MessageIn | Chunk | ChunkBatch | ProcessSpawned | ProcessExit | Recovered | Footer
