"""What a panel is and where it stands in its life: its loaded records, the views of them, and
the requests that move it (pause, resume, end, archive), down to its finish — the stop
recorded, the members' sessions ended, the final analytics written. :class:`~.orchestrator.
Orchestrator` adds what it does while it runs: turns, rounds and messages."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import msgspec
import structlog

from agentplex.protocol.errors import AgentplexError, PanelFinished
from agentplex.protocol.events import Event, PanelEnded, PanelUpdated
from agentplex.protocol.panels import (
    Insight,
    MemberSpec,
    PanelInfo,
    PanelStatus,
    ParticipantKind,
    SpeakerPolicy,
    StopReason,
)
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.panels import analytics, insights
from agentplex.supervisor.panels._info import panel_info
from agentplex.supervisor.panels.metadata_writer import MetadataWriter
from agentplex.supervisor.panels.store import (
    FINAL_ANALYTICS,
    LoadedPanel,
    PanelStore,
    PendingTurn,
)

if TYPE_CHECKING:
    from agentplex.supervisor.panels.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

Publish = Callable[[Event], None]


class PanelLifecycle:
    """A panel's state and its lifecycle; :class:`~.orchestrator.Orchestrator` runs it."""

    def __init__(
        self,
        loaded: LoadedPanel,
        *,
        store: PanelStore,
        manager: SessionManager,
        publish: Publish,
    ) -> None:
        self.id = loaded.metadata.id
        self.config = loaded.config
        self.metadata = loaded.metadata
        self.messages = loaded.messages
        self.participants = loaded.participants
        self.decisions = loaded.decisions
        self._store, self._manager, self._publish = store, manager, publish
        self._metadata = MetadataWriter(
            loaded.metadata, store.save_metadata, store.save_metadata_off_loop
        )
        """Runs in the panel's task group (:meth:`Orchestrator.run`): writes behind the loop."""
        self._resumed = anyio.Event()
        if self.metadata.status is not PanelStatus.PAUSED:
            self._resumed.set()
        self._scope: anyio.CancelScope | None = None
        """The running panel's scope (None until :meth:`Orchestrator.run` enters it)."""
        self._end_requested = False
        self._changed = anyio.Event()
        """Set by whatever may let a waiting panel go on (a post, a pick, a resume)."""
        self.finished = anyio.Event()
        if self.metadata.status.ended:
            self.finished.set()

    # ------------------------------------------------------------------ views

    @property
    def agents(self) -> list[MemberSpec]:
        return [m for m in self.config.members if m.kind is ParticipantKind.AGENT]

    def info(self) -> PanelInfo:
        return panel_info(self.config, self.metadata, self.messages, self.participants)

    def analytics(self) -> tuple[analytics.PanelAnalytics, list[Insight]]:
        """The panel's figures, recomputed from its log, and the insights they count."""
        names = [m.name for m in self.config.members]
        found = [
            i
            for m in self.messages
            for i in insights.capture(m, self.config.markers, names, now=m.ts)
        ]
        return analytics.compute(self.messages, self.decisions, found, names), found

    # ------------------------------------------------------------------ requests

    def pause(self) -> None:
        self._require_live()
        self._resumed = anyio.Event()
        self._set_status(PanelStatus.PAUSED)

    def resume(self) -> None:
        self._require_live()
        self._set_status(PanelStatus.ACTIVE)
        self._resumed.set()
        self._changed.set()

    async def end(self) -> None:
        """Stop at once (a turn in flight is dropped) and wait until the panel is finished."""
        if not self.metadata.status.ended:
            self._end_requested = True
            self._resumed.set()
            if self._scope is not None:
                self._scope.cancel()
            else:  # not running (loaded ended, or the daemon not serving yet)
                await self._finish(StopReason.ENDED_BY_REQUEST)
        await self.finished.wait()

    def archive(self) -> None:
        self._set_status(PanelStatus.ARCHIVED)

    async def saved(self) -> None:
        """Until the metadata file holds every change saved so far (a pause acknowledged
        must survive a crash the instant after)."""
        await self._metadata.wait_written()

    def _require_live(self) -> None:
        if self.metadata.status.ended:
            raise PanelFinished(f"panel {self.id} has ended ({self.metadata.status})")

    # ------------------------------------------------------------------ finishing

    async def _finish(self, reason: StopReason) -> None:
        """Record the stop, end the members' sessions, write the final analytics."""
        if self.finished.is_set():
            return
        self._save(
            status=PanelStatus.COMPLETED,
            stop_reason=reason,
            pending=None,
            in_flight=[],
            ended_at=time.time(),
        )
        grace = self._manager.context.config.terminate_grace
        async with anyio.create_task_group() as tg:  # at once: their /proc scans are shared
            for record in self.participants.values():
                if record.session_id is not None:
                    tg.start_soon(self._end_session, record.session_id, grace)
        self._write_analytics()
        info = self.info()
        self._publish(PanelEnded(panel_id=self.id, panel=info, stop_reason=reason))
        log.info("panel_ended", panel_id=self.id, stop_reason=reason)
        self.finished.set()

    async def _end_session(self, session_id: str, grace: float) -> None:
        try:
            session = self._manager.registry.get(session_id)
            if not session.status.ended:
                await session.terminate(grace, "its panel ended")
        except AgentplexError as exc:  # already gone: nothing of it runs
            log.info("panel_member_not_ended", session_id=session_id, reason=exc.message)

    def _write_analytics(self) -> None:
        self._store.save_json(self.id, FINAL_ANALYTICS, self.analytics()[0])

    # ------------------------------------------------------------------ records

    def _set_status(self, status: PanelStatus) -> None:
        self._save(status=status)
        self._publish(PanelUpdated(panel_id=self.id, panel=self.info()))

    def _save(self, **changes: object) -> None:
        self.metadata = msgspec.structs.replace(self.metadata, **changes)
        self._metadata.save(self.metadata)

    def _note(self, **changes: object) -> None:
        """Change the metadata, written with the next :meth:`_save` (metadata_writer.py)."""
        self.metadata = msgspec.structs.replace(self.metadata, **changes)
        self._metadata.note(self.metadata)


def recover_cut_turns(panel: Orchestrator) -> None:
    """Turns handed out before a crash and never answered (``PanelMetadata.pending``, the
    sequential one; ``in_flight``, each of a parallel round's): recorded as interrupted, so
    the log says it happened (once, however many restarts), then asked again by the loop.
    A turn the log holds a message of was answered (or recorded cut) before a crash that
    came before the metadata's update (a reply's is written with the next turn's), and
    the turn count is the log's when the metadata lags it."""
    pending = panel.metadata.pending
    cut = [*([pending] if pending is not None else []), *panel.metadata.in_flight]
    recorded = {(m.participant, m.turn, m.round) for m in panel.messages}
    for turn in cut:
        if _answered(turn, recorded):
            continue
        message = panel._message(
            turn.participant,
            "(reply interrupted by a daemon restart; asked again)",
            turn=turn.turn,
            round=turn.round,
            interrupted=True,
        )
        panel._append(message)
        log.info("panel_turn_reasked", panel_id=panel.id, participant=turn.participant)
    said = max((m.turn for m in panel.messages if not m.interrupted), default=0)
    if cut or said > panel.metadata.turn:
        panel._save(pending=None, in_flight=[], turn=max(said, panel.metadata.turn))
    manual = panel._plan.rules.speaker_policy is SpeakerPolicy.MANUAL
    if manual and pending is not None and not _answered(pending, recorded):
        panel._manual_pick = pending.participant  # the pick held until it was answered


def _answered(turn: PendingTurn, recorded: set[tuple[str, int, int]]) -> bool:
    return (turn.participant, turn.turn, turn.round) in recorded
