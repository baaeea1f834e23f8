"""What a member's process does after its reply: a turn ends at its ``result`` (the next
member is not kept waiting for the CLI's exit), so a process that then fails — exits
non-zero, or reports an error for the same turn — would go unnoticed. This module watches
for it.

- At each hand-over (``Orchestrator._hand_over``) an :class:`ExitWatch` subscribes to the
  member's session, before anything is awaited, so nothing the turn says is missed.
- Once the reply is recorded (:meth:`Aftermath.follow`), the watch is followed in the
  panel's task group until the turn is over for the session (idle, interrupted, ended);
  an ``error`` chunk (or an error ``result``) of the turn after its good result is the
  failure. The reply stays (it was complete); the failure goes in the log as a system note
  answering the reply, and the member leaves the panel as a member whose turn fails does
  (``participants/<name>.json`` says why; ``panel.participant_left`` carries the reason).
- A member's next turn (a discussion turn or a position) waits for its last turn's process
  to be over (:meth:`Aftermath.settle`): its session would queue the turn until then
  anyway, and a member that failed on its way out is not asked again.
- A panel stopping lets the turns in flight settle for at most ``SETTLE_S``.

A failure in a turn that gave no good result is the orchestrator's own (``MemberReply.failed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import structlog
from anyio.abc import TaskGroup

from agentplex.protocol import Chunk, ChunkBatch, ChunkKind, SessionStatus, chunk_topic, expand
from agentplex.protocol.panels import MessageType
from agentplex.supervisor.bus import Bus, Gap, Message
from agentplex.supervisor.panels.rules import SYSTEM_PARTICIPANT
from agentplex.supervisor.session import Session

if TYPE_CHECKING:
    from agentplex.supervisor.panels.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

SETTLE_S: Final = 5.0
"""How long a stopping panel waits for its members' last processes to be over."""
_OVER = frozenset({SessionStatus.IDLE, SessionStatus.INTERRUPTED})
_KINDS: Final = (b'"kind":"result"', b'"kind":"error"')
"""A chunk that may be a result or an error (decoded only then: the rest is plain text)."""


class ExitWatch:
    """One turn of one member's session, from its hand-over until the turn is over."""

    def __init__(self, bus: Bus, session: Session) -> None:
        self._session = session
        self._chunks = bus.subscribe(chunk_topic(session.id))
        self._status = bus.subscribe(f"session.status_changed.{session.id}".encode())
        self._turn: int | None = None
        """The turn of the first result seen (the panel never queues a member's turns)."""
        self.followed = False
        self.done = anyio.Event()

    async def wait(self) -> str | None:
        """Until the turn is over for its session: what failed after its result, or None."""
        try:
            while not self._over():
                try:
                    await self._status.receive()
                except anyio.EndOfStream:  # the bus is closing with the daemon
                    return None
            return self._failure()
        finally:
            self.close()

    def close(self) -> None:
        self._chunks.close()
        self._status.close()
        self.done.set()

    def _over(self) -> bool:
        status = self._session.status
        return status.ended or status in _OVER

    def _failure(self) -> str | None:
        """The first error the turn reported after its good result (its chunks are all
        buffered by now: the status changed after them)."""
        while True:
            try:
                item = self._chunks.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return None
            if isinstance(item, Gap) or not any(k in item.payload for k in _KINDS):
                continue
            failure = self._take(item)
            if failure is not None:
                return failure

    def _take(self, item: Message) -> str | None:
        event = item.event
        if not isinstance(event, Chunk | ChunkBatch):
            return None
        for chunk in expand(event):
            failed = chunk.kind is ChunkKind.ERROR or (
                chunk.kind is ChunkKind.RESULT and chunk.is_error
            )
            if self._turn is None and chunk.kind is ChunkKind.RESULT:
                if failed:
                    return None  # the turn itself failed: the orchestrator's to record
                self._turn = chunk.turn
            elif failed and chunk.turn == self._turn:
                return chunk.text.strip() or "its process failed after its reply"
        return None


class Aftermath:
    """The exit watches of one panel's members; :meth:`run` is a task of the panel's run."""

    def __init__(self, panel: Orchestrator) -> None:
        self._panel = panel
        self._watches: dict[str, ExitWatch] = {}
        self._tg: TaskGroup | None = None

    async def run(self) -> None:
        """Hold the task group the followed watches run in, until the panel stops."""
        try:
            async with anyio.create_task_group() as self._tg:
                await anyio.sleep_forever()
        finally:
            self._tg = None
            for watch in self._watches.values():
                watch.close()

    def expect(self, name: str, session_id: str | None) -> None:
        """A turn was just handed to ``name``'s session: watch it (call before any await)."""
        self._close(name)
        if session_id is not None:
            session = self._panel._manager.registry.get(session_id)
            self._watches[name] = ExitWatch(self._panel._bus, session)

    def follow(self, name: str, answered: bool) -> None:
        """``name``'s reply is recorded: follow its process to the end of the turn (its
        turn failed, ``answered`` False: nothing more to watch)."""
        watch = self._watches.get(name)
        if watch is None or watch.done.is_set():
            return
        if not answered or self._tg is None:
            self._close(name)
            return
        watch.followed = True
        self._tg.start_soon(self._follow, name, watch)

    async def _follow(self, name: str, watch: ExitWatch) -> None:
        failure = await watch.wait()
        if failure is not None:
            record_failure(self._panel, name, failure)

    async def settle(self, name: str) -> None:
        """Wait until ``name``'s last turn is over for its process (see the module doc)."""
        watch = self._watches.get(name)
        if watch is not None and watch.followed:
            await watch.done.wait()

    async def settle_all(self) -> None:
        """Let every followed turn finish, for at most ``SETTLE_S``."""
        with anyio.move_on_after(SETTLE_S):
            for watch in list(self._watches.values()):
                if watch.followed:
                    await watch.done.wait()

    def _close(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        if watch is not None and not watch.done.is_set():
            watch.close()


def record_failure(panel: Orchestrator, name: str, failure: str) -> None:
    """The failure as a system note answering the member's reply; the member leaves."""
    record = panel.participants.get(name)
    if panel.metadata.status.ended or (record is not None and not record.active):
        return
    reply = next((m for m in reversed(panel.messages) if m.participant == name), None)
    note = panel._message(
        SYSTEM_PARTICIPANT,
        f"({name}'s process failed after its reply, which stands: {failure})",
        turn=panel.metadata.turn,
        round=panel.metadata.round,
        type=MessageType.SYSTEM,
        reply_to=reply.id if reply else None,
        thread_id=(reply.thread_id or reply.id) if reply else None,
    )
    panel._append(note)
    panel._member_left(name, f"its process failed after its reply: {failure}")
    log.info("panel_member_failed_after_reply", panel_id=panel.id, member=name, failure=failure)
