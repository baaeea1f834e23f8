"""One member's turn: handed to its session (started on its first turn), then read off the
in-process bus until its ``result`` (or, without one, until the session is idle again), and
what the member said.

The reply is the turn's final text: the ``result`` chunk's text, else its assistant text
chunks joined. Thinking, tool calls and their results stay in the member's own transcript.
"""

from __future__ import annotations

import time

import anyio
import msgspec

from agentplex.protocol import (
    BackendMode,
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
from agentplex.protocol.errors import AgentplexError
from agentplex.protocol.panels import MemberSpec, PanelConfig
from agentplex.supervisor.bus import Bus, Gap, Message
from agentplex.supervisor.manager import DEFAULT_BACKEND as DEFAULT
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
    yielding in between, so nothing the turn says is missed) and before any ``await``.
    ``queued``: how many turns are ahead of it when ``send`` queued it (its session's previous
    turn was still running, or its process still exiting after its result)."""

    def __init__(self, bus: Bus, session: Session, queued: int = 0) -> None:
        self._session = session
        self._turn = session.turns + queued  # a queued turn gets its number when it begins
        self._began = time.monotonic()
        self._chunks = bus.subscribe(chunk_topic(session.id))
        self._status = bus.subscribe(f"session.status_changed.{session.id}".encode())
        self._seen: list[Chunk] = []
        self._result: Chunk | None = None

    async def wait(self) -> MemberReply:
        """Wait for the turn's ``result`` chunk, or for the turn to end without one (idle,
        interrupted or the session ended). The result completes the reply: the CLI's own
        exit after it (tens of ms) is not waited for; the member's next turn queues in its
        session until then."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_result, tg.cancel_scope)
                tg.start_soon(self._until_over, tg.cancel_scope)
            return self._reply()
        finally:
            self._chunks.close()
            self._status.close()

    async def _until_result(self, scope: anyio.CancelScope) -> None:
        while True:
            try:
                item = await self._chunks.receive()
            except anyio.EndOfStream:  # the bus is closing: the status says how it ended
                return
            self._take(item)
            if self._result is not None:
                scope.cancel()
                return

    async def _until_over(self, scope: anyio.CancelScope) -> None:
        while not self._over():  # each status change is a moment to look again
            await self._status.receive()
        scope.cancel()

    def _over(self) -> bool:
        status = self._session.status
        return status.ended or status in _TURN_OVER

    def _take(self, item: Message | Gap) -> None:
        """Keep the chunks of this turn; note its result (the last thing a turn says)."""
        if isinstance(item, Gap):
            return  # lost to a full buffer: the reply is what was kept
        event = item.event
        if not isinstance(event, Chunk | ChunkBatch):
            return
        for chunk in expand(event):
            if chunk.turn != self._turn:
                continue
            self._seen.append(chunk)
            if chunk.kind is ChunkKind.RESULT:
                self._result = chunk

    def _reply(self) -> MemberReply:
        """Everything the turn published is taken or in the buffer by now: its result or
        its end came after it."""
        self._drain()
        result: Chunk | None = None
        texts: list[str] = []
        partial: list[str] = []
        errors: list[str] = []
        for chunk in self._seen:
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

    def _drain(self) -> None:
        while self._result is None:  # after its result the turn says nothing more
            try:
                item = self._chunks.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):  # nothing more buffered
                return
            self._take(item)


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
        start = msgspec.structs.replace(start, mode=member_mode(manager, start))
        session = await manager.start(start)
        return TurnWatch(bus, session), session  # before any await: nothing is missed
    session, queued = manager.send(session_id, start.prompt or "")
    return TurnWatch(bus, session, queued), None  # queued: its last process is still exiting


async def prestart(
    manager: SessionManager, config: PanelConfig, member: MemberSpec
) -> Session | None:
    """A long-lived member's session, started without a prompt (its process waits for its
    first turn on stdin); None for a member whose turns each start a process, or whose
    start failed (its first turn then says why, as it would have)."""
    start = msgspec.structs.replace(start_request(config, member, ""), prompt=None)
    if member_mode(manager, start) is not BackendMode.LONG_LIVED:
        return None
    try:
        return await manager.start(msgspec.structs.replace(start, mode=BackendMode.LONG_LIVED))
    except AgentplexError:
        return None


def member_mode(manager: SessionManager, start: Start) -> BackendMode | None:
    """The mode a member's session runs in: its backend's ``panel_mode`` when it has one
    (the demo's: long-lived, so a turn handed over is a write to its process's stdin, not a
    process started), else the backend's default (None). A backend not found is left for
    the start to refuse."""
    try:
        persona = manager.personas.get(start.persona) if start.persona else None
        backend = manager.backends.get(start.backend or (persona and persona.backend) or DEFAULT)
    except AgentplexError:
        return None
    mode = getattr(backend, "panel_mode", None)
    return mode if isinstance(mode, BackendMode) and mode in backend.modes else None


def can_resume(manager: SessionManager, backend_id: str | None) -> bool:
    """Whether a member's backend carries its conversation on (a resume id or a long-lived
    process); unknown (not started yet) counts as yes: its first prompt is its whole brief."""
    if backend_id is None:
        return True
    capabilities = manager.backends.get(backend_id).capabilities
    return capabilities.resume or capabilities.long_lived
