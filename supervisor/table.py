"""The durable session table: what a restarted daemon needs to take its sessions back.

Stored as one JSON file replaced atomically (write a temporary file, fsync, rename):
the table is small and changes only at session state changes, never per chunk, so a
whole-file rewrite is cheap, needs no extra dependency, and a reader never sees a torn
table. Chunk counts and the transcript itself are the truth for everything streamed.
"""

from __future__ import annotations

import os
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
    """Saves the table whenever a session's state changes (coalesced, off the hot path).

    Each session's record is encoded when that session changes and kept; a save joins the
    encoded records and writes them, so a burst of N changes costs O(N), not O(N²).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / TABLE_FILE
        self._encoded: dict[str, bytes] = {}
        self._changed: dict[str, Session] = {}
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

    def changed(self, session: Session) -> None:
        """Note that ``session`` must be saved soon."""
        self._changed[session.id] = session
        self._dirty.set()

    def save_now(self, session: Session) -> None:
        """Save at once (a session just created must survive a daemon crash a moment later),
        without waiting for the disk: the page cache outlives the daemon, and the coalesced
        save that follows makes it durable."""
        self.changed(session)
        self.save(durable=False)

    def save(self, *, durable: bool = True) -> None:
        """Replace the table file atomically; a failure (full disk) is logged, not fatal:
        the previous table stays in place and the next change tries again."""
        for sid, session in self._changed.items():
            self._encoded[sid] = _encode(record_of(session))
        self._changed.clear()
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(b'{"sessions":[' + b",".join(self._encoded.values()) + b"]}")
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            log.error("session_table_not_saved", path=str(self.path), error=str(exc))
            tmp.unlink(missing_ok=True)

    async def run(self) -> None:
        """Save after each burst of changes until cancelled, then once more."""
        try:
            while True:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                self.save()
        finally:
            self.save()
