"""One panel, run: who speaks next, what each member is told, its reply turned into a panel
message, insights caught, the stop checked, everything written and published.

Round robin, sequential rounds: in each round every active agent member speaks once, in
the order of the config; each sees every message since its last turn (its own
conversation goes on through its CLI's resume id, so history is not re-sent). Where a
round stands is derived from the message log, so a restart resumes it: a turn handed out
and never answered (``PanelMetadata.pending``) is recorded as an interrupted message and
asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import msgspec
import structlog

from agentplex.protocol import PermissionPolicy, Start, Usage
from agentplex.protocol.errors import AgentplexError, PanelFinished
from agentplex.protocol.events import (
    Event,
    PanelEnded,
    PanelInsightEvent,
    PanelMessageEvent,
    PanelParticipantLeft,
    PanelTurnStarted,
    PanelUpdated,
)
from agentplex.protocol.panels import (
    Insight,
    MemberInfo,
    MemberSpec,
    MessageType,
    PanelInfo,
    PanelMessage,
    PanelStatus,
    ParticipantKind,
    StopReason,
)
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.panels import analytics, insights, prompts, termination
from agentplex.supervisor.panels.member_turn import MemberReply, TurnWatch
from agentplex.supervisor.panels.rules import moderator_of, rules_for
from agentplex.supervisor.panels.store import (
    FINAL_ANALYTICS,
    LoadedPanel,
    PanelStore,
    ParticipantRecord,
    PendingTurn,
)
from agentplex.supervisor.session import Session

log = structlog.get_logger(__name__)

Publish = Callable[[Event], None]


class Orchestrator:
    """Runs one panel (:meth:`run`, a task in the daemon's task group) and takes what its
    requests change (a human's message, a reaction, pause/resume/end)."""

    def __init__(
        self,
        loaded: LoadedPanel,
        *,
        store: PanelStore,
        manager: SessionManager,
        bus: Bus,
        publish: Publish,
    ) -> None:
        self.id = loaded.metadata.id
        self.config = loaded.config
        self.metadata = loaded.metadata
        self.messages = loaded.messages
        self.participants = loaded.participants
        self.decisions = loaded.decisions
        self._store, self._manager, self._bus, self._publish = store, manager, bus, publish
        self._resumed = anyio.Event()
        if self.metadata.status is not PanelStatus.PAUSED:
            self._resumed.set()
        self._scope: anyio.CancelScope | None = None
        self._end_requested = False
        self.finished = anyio.Event()
        if self.metadata.status.ended:
            self.finished.set()
        rules = rules_for(self.config)
        self._condition = termination.parse_until(self.config.until, max_rounds=rules.max_rounds)
        self._condition.check(self._progress(self.messages))  # rebuild the latches
        self._checked = len(self.messages)
        self._started = time.monotonic()

    # ------------------------------------------------------------------ views

    @property
    def agents(self) -> list[MemberSpec]:
        return [m for m in self.config.members if m.kind is ParticipantKind.AGENT]

    def info(self) -> PanelInfo:
        said: dict[str, int] = {}
        usage = Usage()
        for message in self.messages:
            said[message.participant] = said.get(message.participant, 0) + 1
            if message.usage is not None:
                usage = _add(usage, message.usage)
        members = []
        for spec in self.config.members:
            record = self.participants.get(spec.name)
            members.append(
                MemberInfo(
                    spec=spec,
                    session_id=record.session_id if record else None,
                    messages=said.get(spec.name, 0),
                    active=record.active if record else True,
                )
            )
        pending = self.metadata.pending
        return PanelInfo(
            id=self.id,
            config=self.config,
            status=self.metadata.status,
            members=members,
            created_at=self.metadata.created_at,
            round=self.metadata.round,
            turn=self.metadata.turn,
            messages=len(self.messages),
            speaking=pending.participant if pending else None,
            stop_reason=self.metadata.stop_reason,
            usage=usage,
        )

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Give turns until a stop condition holds, then finish the panel. Cancelled (the
        daemon stopping) it leaves the panel as it is, to be resumed after a restart."""
        if self.metadata.status.ended:
            return
        self._recover_pending()
        reason: StopReason | None = None
        with anyio.CancelScope() as self._scope:
            reason = await self._loop()
        if self._end_requested or reason is not None:
            with anyio.CancelScope(shield=True):
                await self._finish(reason or StopReason.ENDED_BY_REQUEST)

    async def _loop(self) -> StopReason:
        while True:
            await self._resumed.wait()
            reason = self._stop_reason()
            if reason is not None:
                return reason
            speaker = self._next_speaker()
            if speaker is None:  # every agent spoke this round
                self._save(round=self.metadata.round + 1)
                self._publish(PanelUpdated(panel_id=self.id, panel=self.info()))
                continue
            await self._turn(speaker)

    def _next_speaker(self) -> MemberSpec | None:
        spoke = {
            m.participant
            for m in self.messages
            if m.round == self.metadata.round and not m.interrupted
        }
        for member in self.agents:
            if member.name not in spoke and self._active(member.name):
                return member
        return None

    def _active(self, name: str) -> bool:
        record = self.participants.get(name)
        return record is None or record.active

    def _stop_reason(self) -> StopReason | None:
        fresh = self.messages[self._checked :]
        self._checked = len(self.messages)
        return self._condition.check(self._progress(fresh))

    def _progress(self, fresh: list[PanelMessage]) -> termination.Progress:
        said = [m for m in self.messages if m.type is not MessageType.SYSTEM and not m.interrupted]
        tokens = sum(m.usage.input_tokens + m.usage.output_tokens for m in said if m.usage)
        return termination.Progress(
            rounds=self.metadata.round,
            messages=len(said),
            tokens=tokens,
            cost_usd=sum(m.usage.cost_usd for m in said if m.usage),
            elapsed_s=time.time() - self.metadata.created_at,
            last_messages=fresh,
            moderator=moderator_of(self.config),
            members_alive=sum(1 for m in self.agents if self._active(m.name)),
            ended_by_request=self._end_requested,
        )

    async def _turn(self, member: MemberSpec) -> None:
        prompt = self._prompt_for(member)
        turn, rnd = self.metadata.turn + 1, self.metadata.round
        self._save(
            pending=PendingTurn(participant=member.name, turn=turn, round=rnd, ts=time.time())
        )
        self._publish(
            PanelTurnStarted(
                panel_id=self.id, participant=member.name, turn=turn, round=rnd, ts=time.time()
            )
        )
        try:
            watch = await self._hand_over(member, prompt)
        except AgentplexError as exc:
            self._member_left(member.name, f"its turn could not start: {exc.message}")
            reply = MemberReply(text="", latency_ms=0, failed=exc.message, session_ended=True)
        else:
            reply = await watch.wait()
            if reply.session_ended:
                self._member_left(member.name, reply.failed or "its session ended")
        self._record_reply(member, reply, turn, rnd)

    async def _hand_over(self, member: MemberSpec, prompt: str) -> TurnWatch:
        """Start the member's session with ``prompt``, or send it to the one it has."""
        record = self.participants.get(member.name)
        session_id = record.session_id if record else None
        if session_id is None:
            session = await self._manager.start(self._start_request(member, prompt))
            watch = TurnWatch(self._bus, session)  # before any await: nothing is missed
            self._save_participant(member, session)
            return watch
        session = self._manager.registry.get(session_id)
        self._manager.send(session.id, prompt)
        return TurnWatch(self._bus, session)

    def _start_request(self, member: MemberSpec, prompt: str) -> Start:
        return Start(
            backend=member.backend,
            persona=member.persona,
            model=member.model,
            prompt=prompt,
            permission_policy=PermissionPolicy.DENY,  # members discuss; they use no tools
            tag=self.config.tag or "panels",
            cwd=self.config.cwd,
        )

    def _save_participant(self, member: MemberSpec, session: Session) -> None:
        record = ParticipantRecord(
            name=member.name,
            session_id=session.id,
            transcript=str(session.transcript.path),
            backend=session.backend.id,
        )
        self.participants[member.name] = record
        self._store.save_participant(self.id, record)

    def _member_left(self, name: str, reason: str) -> None:
        record = self.participants.get(name) or ParticipantRecord(name=name)
        record = msgspec.structs.replace(record, active=False, left_reason=reason)
        self.participants[name] = record
        self._store.save_participant(self.id, record)
        self._publish(PanelParticipantLeft(panel_id=self.id, participant=name, reason=reason))

    def _record_reply(self, member: MemberSpec, reply: MemberReply, turn: int, rnd: int) -> None:
        if reply.failed is not None:
            text, kind = f"({member.name} gave no reply: {reply.failed})", MessageType.SYSTEM
        else:
            text, kind = reply.text[: self.config.max_message_chars], MessageType.CONVERSATION
        message = self._message(
            member.name,
            text,
            turn=turn,
            round=rnd,
            type=kind,
            usage=reply.usage,
            latency_ms=reply.latency_ms,
        )
        self._append(message)
        self._save(turn=turn, pending=None)
        self._capture(message)

    # ------------------------------------------------------------------ prompts

    def _prompt_for(self, member: MemberSpec) -> str:
        """Its first turn: its brief, and what was said before it; later: what it has not
        seen since its last message (the rest is in its own conversation)."""
        own = [
            i
            for i, m in enumerate(self.messages)
            if m.participant == member.name
            and m.type is not MessageType.SYSTEM
            and not m.interrupted
        ]
        if own:
            return prompts.catch_up(self.config, member, self.messages[own[-1] + 1 :])
        brief = prompts.first_prompt(self.config, member)
        earlier = [m for m in self.messages if m.participant != member.name]
        if not any(m.type is not MessageType.SYSTEM and not m.interrupted for m in earlier):
            return brief
        return f"{brief}\n\n{prompts.catch_up(self.config, member, earlier)}"

    # ------------------------------------------------------------------ messages

    def _message(self, participant: str, text: str, **fields: object) -> PanelMessage:
        names = [m.name for m in self.config.members]
        return PanelMessage(
            id=f"{self.id[:8]}-m{len(self.messages) + 1:05d}",
            panel_id=self.id,
            participant=participant,
            text=text,
            ts=time.time(),
            mentions=insights.mentions(text, names),
            **fields,  # type: ignore[arg-type]
        )

    def _append(self, message: PanelMessage) -> None:
        self._store.append_message(message)
        self.messages.append(message)
        self._publish(PanelMessageEvent(panel_id=self.id, message=message))

    def _capture(self, message: PanelMessage) -> None:
        names = [m.name for m in self.config.members]
        for insight in insights.capture(message, self.config.markers, names, now=time.time()):
            self._store.append_insight(insight)
            self._publish(PanelInsightEvent(panel_id=self.id, insight=insight))

    def post(self, participant: str, text: str, reply_to: str | None) -> PanelMessage:
        """A human's message: in the log at once, seen by each member on its next turn."""
        if self.metadata.status.ended:
            raise PanelFinished(f"panel {self.id} has ended ({self.metadata.status})")
        message = self._message(
            participant,
            text,
            turn=self.metadata.turn,
            round=self.metadata.round,
            reply_to=reply_to,
            thread_id=reply_to,
        )
        self._append(message)
        self._capture(message)
        return message

    def _recover_pending(self) -> None:
        """A turn handed out before a crash and never answered: recorded as interrupted
        (so the log says it happened), then asked again by the loop."""
        pending = self.metadata.pending
        if pending is None:
            return
        message = self._message(
            pending.participant,
            "(reply interrupted by a daemon restart; asked again)",
            turn=pending.turn,
            round=pending.round,
            interrupted=True,
        )
        self._append(message)
        self._save(pending=None)
        log.info("panel_turn_reasked", panel_id=self.id, participant=pending.participant)

    # ------------------------------------------------------------------ lifecycle

    def pause(self) -> None:
        self._require_live()
        self._resumed = anyio.Event()
        self._set_status(PanelStatus.PAUSED)

    def resume(self) -> None:
        self._require_live()
        self._set_status(PanelStatus.ACTIVE)
        self._resumed.set()

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

    def _require_live(self) -> None:
        if self.metadata.status.ended:
            raise PanelFinished(f"panel {self.id} has ended ({self.metadata.status})")

    async def _finish(self, reason: StopReason) -> None:
        """Record the stop, end the members' sessions, write the final analytics."""
        if self.finished.is_set():
            return
        self._save(
            status=PanelStatus.COMPLETED, stop_reason=reason, pending=None, ended_at=time.time()
        )
        grace = self._manager.context.config.terminate_grace
        for record in self.participants.values():
            if record.session_id is not None:
                await self._end_session(record.session_id, grace)
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

    def analytics(self) -> tuple[analytics.PanelAnalytics, list[Insight]]:
        """The panel's figures, recomputed from its log, and the insights they count."""
        names = [m.name for m in self.config.members]
        found = [
            i
            for m in self.messages
            for i in insights.capture(m, self.config.markers, names, now=m.ts)
        ]
        return analytics.compute(self.messages, self.decisions, found, names), found

    def _set_status(self, status: PanelStatus) -> None:
        self._save(status=status)
        self._publish(PanelUpdated(panel_id=self.id, panel=self.info()))

    def _save(self, **changes: object) -> None:
        self.metadata = msgspec.structs.replace(self.metadata, **changes)
        self._store.save_metadata(self.metadata)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
    )
