"""One member's turn: handed to its session (started on its first turn), then read off the
in-process bus until the session is idle again, and what the member said.

The reply is the turn's final text: the ``result`` chunk's text, else its assistant text
chunks joined. Thinking, tool calls and their results stay in the member's own transcript.
"""

from __future__ import annotations

import time

import anyio
import msgspec

from agentplex.protocol import (
    Chunk,
    ChunkBatch,
    ChunkKind,
    PermissionPolicy,
    SessionStatus,
    Start,
    Usage,
    chunk_topic,
    expand,
)
from agentplex.protocol.panels import MemberSpec, PanelConfig
from agentplex.supervisor.bus import Bus, Gap
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.session import Session

_TURN_OVER = frozenset({SessionStatus.IDLE, SessionStatus.INTERRUPTED})


class MemberReply(msgspec.Struct, frozen=True, kw_only=True):
    """What a member said in one turn."""

    text: str
    usage: Usage | None = None
    latency_ms: int
    failed: str | None = None
    """Why the turn gave no usable reply (an error, the session ended), else None."""
    session_ended: bool = False


class TurnWatch:
    """Subscribes to one session's chunks and status; :meth:`wait` returns its reply.

    Make it right after the turn was handed over (``manager.start``/``send`` return without
    yielding in between, so nothing the turn says is missed) and before any ``await``."""

    def __init__(self, bus: Bus, session: Session) -> None:
        self._session = session
        self._turn = session.turns
        self._began = time.monotonic()
        self._chunks = bus.subscribe(chunk_topic(session.id))
        self._status = bus.subscribe(f"session.status_changed.{session.id}".encode())

    async def wait(self) -> MemberReply:
        """Wait for the turn to end (idle, interrupted or the session ended)."""
        try:
            while not self._over():  # each status change is a moment to look again
                await self._status.receive()
            return self._reply()
        finally:
            self._chunks.close()
            self._status.close()

    def _over(self) -> bool:
        status = self._session.status
        return status.ended or status in _TURN_OVER

    def _reply(self) -> MemberReply:
        """Everything the turn published is in the buffer by now: its end came after it."""
        result: Chunk | None = None
        texts: list[str] = []
        partial: list[str] = []
        errors: list[str] = []
        for chunk in self._drain():
            if chunk.turn != self._turn:
                continue
            if chunk.kind is ChunkKind.RESULT:
                result = chunk
            elif chunk.kind is ChunkKind.TEXT:
                (partial if chunk.partial else texts).append(chunk.text)
            elif chunk.kind is ChunkKind.ERROR:
                errors.append(chunk.text)
        text = (result.text if result and result.text else "") or "".join(texts or partial)
        failed = None
        if result is not None and result.is_error:
            failed = result.text or "the member's turn failed"
        elif result is None and errors:  # cut off mid-reply (its process died): no reply
            failed = errors[-1]
        elif not text.strip():
            failed = errors[-1] if errors else "the member gave no reply"
        ended = self._session.status.ended
        if ended and failed is None and result is None:
            failed = f"the member's session ended ({self._session.status})"
        return MemberReply(
            text=text.strip(),
            usage=result.usage if result is not None else None,
            latency_ms=round((time.monotonic() - self._began) * 1000),
            failed=failed,
            session_ended=ended,
        )

    def _drain(self) -> list[Chunk]:
        found: list[Chunk] = []
        while True:
            try:
                item = self._chunks.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):  # nothing more buffered
                return found
            if isinstance(item, Gap):
                continue  # lost to a full buffer: the reply is what was kept
            event = item.event
            if isinstance(event, Chunk | ChunkBatch):
                found.extend(expand(event))


def start_request(config: PanelConfig, member: MemberSpec, prompt: str) -> Start:
    """The session a member's first turn starts."""
    return Start(
        backend=member.backend,
        persona=member.persona,
        model=member.model,
        prompt=prompt,
        permission_policy=PermissionPolicy.DENY,  # members discuss; they use no tools
        tag=config.tag or "panels",
        cwd=config.cwd,
    )


async def hand_over(
    manager: SessionManager, bus: Bus, session_id: str | None, start: Start
) -> tuple[TurnWatch, Session | None]:
    """Start the member's session with ``start`` (returned, for the panel to record), or
    send ``start.prompt`` to the session it has; with the watch on the turn."""
    if session_id is None:
        session = await manager.start(start)
        return TurnWatch(bus, session), session  # before any await: nothing is missed
    session = manager.registry.get(session_id)
    manager.send(session.id, start.prompt or "")
    return TurnWatch(bus, session), None


def can_resume(manager: SessionManager, backend_id: str | None) -> bool:
    """Whether a member's backend carries its conversation on (a resume id or a long-lived
    process); unknown (not started yet) counts as yes: its first prompt is its whole brief."""
    if backend_id is None:
        return True
    capabilities = manager.backends.get(backend_id).capabilities
    return capabilities.resume or capabilities.long_lived
