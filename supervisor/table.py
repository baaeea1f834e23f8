"""The durable session table: what a restarted daemon needs to take its sessions back.

Stored as one JSON file replaced atomically (write a temporary file, fsync, rename):
the table is small and changes only at session state changes, never per chunk, so a
whole-file rewrite is cheap, needs no extra dependency, and a reader never sees a torn
table. Chunk counts and the transcript itself are the truth for everything streamed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
import structlog

from agentplex.client.protocol import SessionInfo

if TYPE_CHECKING:
    from agentplex.supervisor.session import Session

log = structlog.get_logger(__name__)

TABLE_FILE = "sessions.json"


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One session as the table keeps it: its info plus what is needed to continue it."""

    info: SessionInfo
    env: dict[str, str] = {}
    command: list[str] = []
    instructions: str | None = None
    allowed_tools: list[str] = []
    permission_policy: str = "ask"
    resume_id: str | None = None
    pid_started_at: float | None = None
    """The process's start time (psutil create_time), to prove a pid is still ours."""


SnapshotFn = Callable[[], list[SessionRecord]]


def record_of(session: Session) -> SessionRecord:
    """What the table keeps of a session."""
    spec = session.spec
    return SessionRecord(
        info=session.info(),
        env=dict(spec.env),
        command=list(spec.command),
        instructions=spec.instructions,
        allowed_tools=list(spec.allowed_tools),
        permission_policy=spec.permission_policy.value,
        resume_id=session.resume_id,
        pid_started_at=session.pid_started_at,
    )


class _Table(msgspec.Struct):
    sessions: list[SessionRecord] = []


_decode = msgspec.json.Decoder(_Table).decode
_encode = msgspec.json.Encoder().encode


class SessionTable:
    """Saves the table whenever a session's state changes (coalesced, off the hot path)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / TABLE_FILE
        self._dirty = anyio.Event()

    def load(self) -> list[SessionRecord]:
        """The saved sessions; a missing table is empty, a corrupt one is reported and set aside."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return _decode(data).sessions
        except msgspec.DecodeError as exc:
            aside = self.path.with_suffix(".corrupt")
            self.path.replace(aside)
            log.error(
                "session_table_unreadable", path=str(self.path), moved_to=str(aside), error=str(exc)
            )
            return []

    def changed(self) -> None:
        """Note that the table must be saved soon."""
        self._dirty.set()

    def save(self, records: Iterable[SessionRecord]) -> None:
        """Replace the table file atomically; a failure (full disk) is logged, not fatal:
        the previous table stays in place and the next change tries again."""
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(_encode(_Table(sessions=list(records))))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            log.error("session_table_not_saved", path=str(self.path), error=str(exc))
            tmp.unlink(missing_ok=True)

    async def run(self, snapshot: SnapshotFn) -> None:
        """Save after each burst of changes until cancelled, then once more."""
        try:
            while True:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                self.save(snapshot())
        finally:
            self.save(snapshot())
