"""PanelService: the daemon's panels — created, found, listed, posted to and controlled here;
each active one run by its :class:`Orchestrator` in the service's task group."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from agentplex.protocol.errors import InvalidArgument, PanelFinished, UnknownPanel
from agentplex.protocol.events import PanelMessageEvent, PanelParticipantJoined
from agentplex.protocol.panels import (
    Decision,
    MemberInfo,
    PanelAction,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    PanelStatus,
    Reaction,
    RoundShape,
    SpeakerPolicy,
)
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.panels import decisions, rules
from agentplex.supervisor.panels.orchestrator import Orchestrator
from agentplex.supervisor.panels.store import (
    LoadedPanel,
    PanelMetadata,
    PanelStore,
    PanelStoreError,
    ReactionRecord,
)
from agentplex.supervisor.validation import require_text

log = structlog.get_logger(__name__)

MAX_EMOJI_CHARS = 16


class PanelService:
    """Every panel under ``<state>/panels``; the live ones run while :meth:`run` runs."""

    def __init__(self, state_dir: Path, manager: SessionManager, bus: Bus) -> None:
        self.store = PanelStore(state_dir / "panels", manager.context.flusher)  # fsync off-loop
        self._manager = manager
        self._bus = bus
        self._events = EventPublisher(bus)
        self._panels: dict[str, Orchestrator] = {}
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load every panel and run the unfinished ones (a crash's resume) until cancelled."""
        async with anyio.create_task_group() as self._tg:
            for panel_id in await anyio.to_thread.run_sync(self.store.ids):
                try:
                    loaded = self.store.load(panel_id)
                except PanelStoreError as exc:
                    log.error("panel_unreadable", panel_id=panel_id, error=str(exc))
                    continue
                self._add(loaded)
            task_status.started()
            await anyio.sleep_forever()

    def stop(self) -> None:
        """The daemon is stopping: every panel stays as it is, to resume after a restart."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _add(self, loaded: LoadedPanel) -> Orchestrator:
        panel = Orchestrator(
            loaded,
            store=self.store,
            manager=self._manager,
            bus=self._bus,
            publish=self._events.publish,
        )
        self._panels[panel.id] = panel
        if not panel.metadata.status.ended and self._tg is not None:
            self._tg.start_soon(panel.run)
        return panel

    # ------------------------------------------------------------------ requests

    def create(self, config: PanelConfig) -> PanelInfo:
        """Check the config whole, then write the panel and start running it."""
        manager = self._manager
        personas = [persona.name for persona in manager.personas]
        backends = [backend.id for backend in manager.backends]
        rules.validate(config, personas, backends)
        _require_built(config)
        for member in config.members:
            if member.persona is not None:
                manager.personas.get(member.persona)  # its own backend must exist too
        now = time.time()
        metadata = PanelMetadata(id=str(uuid.uuid4()), status=PanelStatus.ACTIVE, created_at=now)
        self.store.create(config, metadata)
        loaded = LoadedPanel(
            config=config, metadata=metadata, messages=[], participants={}, decisions=[]
        )
        panel = self._add(loaded)
        for spec in config.members:
            joined = MemberInfo(spec=spec)
            self._events.publish(PanelParticipantJoined(panel_id=panel.id, member=joined))
        log.info("panel_created", panel_id=panel.id, type=config.type, members=len(config.members))
        return panel.info()

    def get(self, ref: str) -> Orchestrator:
        """A panel by id or unique id prefix."""
        if ref in self._panels:
            return self._panels[ref]
        found = [panel for pid, panel in self._panels.items() if ref and pid.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if found:
            raise InvalidArgument(f"{ref!r} names {len(found)} panels: give more of the id")
        raise UnknownPanel(f"no panel {ref!r} (see 'agentplex panel ls')")

    def listing(self, everything: bool) -> list[PanelInfo]:
        infos = [panel.info() for panel in self._panels.values()]
        if not everything:
            infos = [i for i in infos if i.status is not PanelStatus.ARCHIVED]
        return sorted(infos, key=lambda info: info.created_at, reverse=True)

    def show(self, ref: str, start: int, limit: int) -> tuple[PanelInfo, list[PanelMessage]]:
        panel = self.get(ref)
        if start < 0 or limit < 1:
            raise InvalidArgument(f"start must be 0 or more and limit 1 or more: {start}, {limit}")
        return panel.info(), panel.messages[start : start + min(limit, 10_000)]

    def say(self, ref: str, participant: str, text: str, reply_to: str | None) -> PanelMessage:
        panel = self.get(ref)
        require_text("message", text)
        require_text("participant name", participant)
        if reply_to is not None:
            self._message(panel, reply_to)
        if any(m.name.casefold() == participant.casefold() for m in panel.agents):
            raise InvalidArgument(f"{participant!r} is an agent member: only it speaks as itself")
        return panel.post(participant, text, reply_to)

    def react(self, ref: str, message_id: str, emoji: str, participant: str) -> PanelMessage:
        panel = self.get(ref)
        if panel.metadata.status.ended:
            raise PanelFinished(f"panel {panel.id} has ended ({panel.metadata.status})")
        require_text("emoji", emoji)
        if len(emoji) > MAX_EMOJI_CHARS:
            raise InvalidArgument(f"a reaction is at most {MAX_EMOJI_CHARS} characters")
        index, message = self._message(panel, message_id)
        reaction = Reaction(participant=participant, emoji=emoji, ts=time.time())
        self.store.append_reaction(
            panel.id, ReactionRecord(message_id=message.id, reaction=reaction)
        )
        message = msgspec.structs.replace(message, reactions=[*message.reactions, reaction])
        panel.messages[index] = message
        self._events.publish(PanelMessageEvent(panel_id=panel.id, message=message, updated=True))
        return message

    def _message(self, panel: Orchestrator, message_id: str) -> tuple[int, PanelMessage]:
        for index, message in enumerate(panel.messages):
            if message.id == message_id:
                return index, message
        raise InvalidArgument(f"panel {panel.id[:8]} has no message {message_id!r}")

    def pick(self, ref: str, name: str) -> PanelInfo:
        """A human's pick of the next speaker (``panel next``, the manual policy)."""
        panel = self.get(ref)
        require_text("member name", name)
        panel.pick(name)
        return panel.info()

    async def control(self, ref: str, action: PanelAction) -> PanelInfo:
        panel = self.get(ref)
        match action:
            case PanelAction.PAUSE:
                panel.pause()
            case PanelAction.RESUME:
                panel.resume()
            case PanelAction.END:
                await panel.end()
            case PanelAction.ARCHIVE:
                if not panel.metadata.status.ended:  # archive keeps a record: end it first
                    raise InvalidArgument(
                        f"panel {panel.id[:8]} is {panel.metadata.status}: end it before "
                        "archiving ('agentplex panel end ID')"
                    )
                panel.archive()
        await panel.saved()
        return panel.info()

    async def decide(
        self, ref: str, proposal: str, *, veto: bool, human_wait_s: float
    ) -> Decision:
        """A position round on ``proposal`` between two turns, and its decision (decisions.py)."""
        panel = self.get(ref)
        return await decisions.decide(panel, proposal, veto=veto, human_wait_s=human_wait_s)


def _require_built(config: PanelConfig) -> None:
    """Refuse a speaker policy asked for by name where it would silently play no part."""
    policy = config.speaker_policy
    parallel = config.shape is not RoundShape.SEQUENTIAL
    if parallel and policy is not None and policy is not SpeakerPolicy.ROUND_ROBIN:
        raise InvalidArgument(
            f"speaker policy {policy} picks one speaker at a time: {config.shape} rounds give "
            "every member its turn at once (use --shape sequential)"
        )
