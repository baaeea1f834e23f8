"""One panel, run: who speaks next, what each member is told, its reply turned into a panel
message, insights caught, the stop checked, everything written and published.

Who speaks and what each member is told is planned by :class:`~.rounds.Rounds` (speaker
policies, sequential / simultaneous / review rounds); this module carries the plan out. Where
a round stands is derived from the message log, so a restart resumes it: a turn handed
out and never answered (``PanelMetadata.pending``, or a parallel round's ``in_flight``) is
recorded as an interrupted message and asked again (``lifecycle.recover_cut_turns``).
A voting panel's members' proposals are voted between turns (proposals.py); a member's
process that fails after its reply is noticed by aftermath.py.
"""

from __future__ import annotations

import time

import anyio
import msgspec
import structlog

from agentplex.protocol.errors import AgentplexError, PanelFinished
from agentplex.protocol.events import (
    PanelInsightEvent,
    PanelMessageEvent,
    PanelParticipantLeft,
    PanelTurnStarted,
    PanelUpdated,
)
from agentplex.protocol.panels import (
    Insight,
    MemberSpec,
    MessageType,
    PanelMessage,
    StopReason,
)
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.panels import clock, insights, termination
from agentplex.supervisor.panels.aftermath import Aftermath
from agentplex.supervisor.panels.lifecycle import PanelLifecycle, Publish, recover_cut_turns
from agentplex.supervisor.panels.member_turn import (
    MemberReply,
    TurnWatch,
    can_resume,
    hand_over,
    prestart,
    start_request,
)
from agentplex.supervisor.panels.proposals import ProposalVotes
from agentplex.supervisor.panels.rounds import Rounds, review_file
from agentplex.supervisor.panels.rules import (
    SYSTEM_PARTICIPANT,
    find_member,
    moderator_of,
    rules_for,
)
from agentplex.supervisor.panels.store import (
    LoadedPanel,
    PanelStore,
    ParticipantRecord,
    PendingTurn,
)
from agentplex.supervisor.session import Session

log = structlog.get_logger(__name__)


class Orchestrator(PanelLifecycle):
    """Runs one panel (:meth:`run`, a task in the daemon's task group) and takes what its
    requests change (a human's message, a reaction, a pick); pause/resume/end and the finish
    are :class:`~.lifecycle.PanelLifecycle`'s."""

    def __init__(
        self,
        loaded: LoadedPanel,
        *,
        store: PanelStore,
        manager: SessionManager,
        bus: Bus,
        publish: Publish,
    ) -> None:
        super().__init__(loaded, store=store, manager=manager, publish=publish)
        self._bus = bus
        self._stopped: StopReason | None = None
        self._plan = Rounds(self.config, self.id)
        self._manual_pick: str | None = None
        self.floor = anyio.Lock()
        """Held by each turn (or parallel round) and by a position round (decisions.py)."""
        rules = rules_for(self.config)
        self._condition = termination.parse_until(self.config.until, max_rounds=rules.max_rounds)
        self._condition.check(self._progress(self.messages))  # rebuild the latches
        self._checked = len(self.messages)
        self._started = time.monotonic()
        self._votes = ProposalVotes(self)
        self._exits = Aftermath(self)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Give turns until a stop condition holds, then finish the panel. Cancelled (the
        daemon stopping) it leaves the panel as it is, to be resumed after a restart."""
        if self.metadata.status.ended:
            return
        recover_cut_turns(self)  # a crash's turns: recorded interrupted, asked again
        reason: StopReason | None = None
        with anyio.CancelScope() as self._scope:
            async with anyio.create_task_group() as tg:  # time= stops cut the turn in flight
                progress = lambda: self._progress([])  # noqa: E731
                started = self.metadata.created_at
                tg.start_soon(clock.stop_on_time, self._condition, progress, started, self._stop)
                tg.start_soon(self._exits.run)
                tg.start_soon(self._metadata.run)
                await self._warm_up()
                reason = await self._loop()
                await self._exits.settle_all()  # a last reply's process may yet fail
                tg.cancel_scope.cancel()
        reason = reason or self._stopped
        if self._end_requested or reason is not None:
            with anyio.CancelScope(shield=True):
                await self._finish(reason or StopReason.ENDED_BY_REQUEST)

    def _stop(self, reason: StopReason) -> None:
        """Stop now, the turn in flight dropped (the clock found a condition met)."""
        self._stopped = reason
        if self._scope is not None:
            self._scope.cancel()

    async def _loop(self) -> StopReason:
        while True:
            await self._resumed.wait()
            if not self._resumed.is_set():  # paused while this woke (wait checkpoints)
                continue
            await self._votes.run_pending()  # a member's DECISION: is voted before any stop
            reason = self._stop_reason()
            if reason is not None:
                return reason
            if self._plan.round_over(self.messages, self.metadata.round, self._inactive()):
                self._save(round=self.metadata.round + 1)
                self._publish(PanelUpdated(panel_id=self.id, panel=self.info()))
            else:
                async with self.floor:  # a position round waits for the turn in flight
                    if not self._resumed.is_set():  # paused while the floor was taken (yields)
                        continue
                    turns = self._parallel_round if self._plan.parallel else self._sequential_turn
                    await turns()

    async def _sequential_turn(self) -> None:
        choice = self._plan.next_speaker(self.messages, self._inactive(), self._manual_pick)
        if choice is None:  # a manual panel before its pick, or no one may speak yet
            await self._wait_change()
            return
        await self._exits.settle(choice.name)  # its last turn's process over (aftermath.py)
        if not self._active(choice.name):
            return  # it failed on its way out: choose again
        if choice.fallback:
            self._system(f"{choice.name} speaks next: {choice.reason}")
        self._manual_pick = None
        member = find_member(self.config, choice.name)
        assert member is not None  # next_speaker picks members only
        prompt = self._plan.sequential_prompt(member, self.messages, self._resumable(member))
        await self._turn(member, prompt, self.metadata.turn + 1, sequential=True)

    async def _parallel_round(self) -> None:
        """Every member owing this round its turn at once; prompts all made first."""
        rnd = self.metadata.round
        await self._exits.settle_all()  # the last round's processes over (aftermath.py)
        owing = self._plan.owing(self.messages, rnd, self._inactive())
        handed, labels = self._plan.parallel_prompts(self.messages, rnd, owing, self._resumable)
        if labels:  # stored before any prompt goes out, never sent
            self._store.save_json(self.id, review_file(rnd), labels)
        base = self.metadata.turn
        out = [
            PendingTurn(participant=member.name, turn=base + n, round=rnd, ts=time.time())
            for n, (member, _) in enumerate(handed, start=1)
        ]
        self._save(in_flight=out)  # each one a crash cuts is recorded interrupted on restart
        await self._metadata.wait_written()  # on disk before any prompt goes out
        async with anyio.create_task_group() as tg:
            for offset, (member, prompt) in enumerate(handed, start=1):
                tg.start_soon(self._turn, member, prompt, base + offset)

    async def _wait_change(self) -> None:
        # Bounded: the floor is given up each second, so a position round is never starved.
        with anyio.move_on_after(1.0):
            await self._changed.wait()
        self._changed = anyio.Event()

    def _inactive(self) -> frozenset[str]:
        return frozenset(n for n, r in self.participants.items() if not r.active)

    def _resumable(self, member: MemberSpec) -> bool:
        record = self.participants.get(member.name)
        return can_resume(self._manager, record.backend if record else None)

    def pick(self, name: str) -> None:
        """A human's pick of the next speaker (``panel next``) under the manual policy."""
        self._require_live()
        self._manual_pick = self._plan.check_pick(name, self._inactive())
        self._changed.set()

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

    async def _turn(
        self, member: MemberSpec, prompt: str, turn: int, *, sequential: bool = False
    ) -> None:
        rnd = self.metadata.round
        if sequential:  # a parallel round's owed turns are read off the log instead
            pending = PendingTurn(participant=member.name, turn=turn, round=rnd, ts=time.time())
            self._save(pending=pending)  # with the last reply's changes: one write per turn
            await self._metadata.wait_written()  # on disk before the prompt goes out
        self._publish(
            PanelTurnStarted(
                panel_id=self.id, participant=member.name, turn=turn, round=rnd, ts=time.time()
            )
        )
        try:
            with anyio.CancelScope(shield=True):  # a session started is one recorded
                watch = await self._hand_over(member, prompt)
        except AgentplexError as exc:
            self._member_left(member.name, f"its turn could not start: {exc.message}")
            reply = MemberReply(text="", latency_ms=0, failed=exc.message, session_ended=True)
        else:
            reply = await watch.wait()
            if reply.session_ended or reply.failed is not None:  # failed: it takes no more turns
                self._member_left(member.name, reply.failed or "its session ended")
        self._record_reply(member, reply, turn, rnd)
        self._exits.follow(member.name, reply.failed is None and not reply.session_ended)

    async def _hand_over(self, member: MemberSpec, prompt: str) -> TurnWatch:
        """Start the member's session with ``prompt`` (recorded at once), or send it to the
        one it has."""
        record = self.participants.get(member.name)
        start = start_request(self.config, member, prompt)
        session_id = record.session_id if record else None
        watch, started = await hand_over(self._manager, self._bus, session_id, start)
        if started is not None:
            self._save_participant(member, started)
        self._exits.expect(member.name, started.id if started is not None else session_id)
        return watch

    async def _warm_up(self) -> None:
        """Start each long-lived member's process before the first turn, so that every turn
        is handed over by a write to its stdin, never by a process start."""
        for member in self.agents:
            if member.name not in self.participants:
                with anyio.CancelScope(shield=True):  # a session started is one recorded
                    session = await prestart(self._manager, self.config, member)
                if session is not None:
                    self._save_participant(member, session)

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
        out = [t for t in self.metadata.in_flight if t.participant != member.name]
        # Written with the next save: the message in the log says the turn was answered.
        self._note(turn=max(turn, self.metadata.turn), pending=None, in_flight=out)
        self._votes.note(message, self._capture(message))

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

    def _system(self, text: str) -> None:
        """The orchestrator's own note in the log (a fallback and why)."""
        self._append(
            self._message(
                SYSTEM_PARTICIPANT,
                text,
                turn=self.metadata.turn,
                round=self.metadata.round,
                type=MessageType.SYSTEM,
            )
        )

    def _append(self, message: PanelMessage) -> None:
        self._store.append_message(message)
        self.messages.append(message)
        self._publish(PanelMessageEvent(panel_id=self.id, message=message))

    def _capture(self, message: PanelMessage) -> list[Insight]:
        names = [m.name for m in self.config.members]
        found = insights.capture(message, self.config.markers, names, now=time.time())
        for insight in found:
            self._store.append_insight(insight)
            self._publish(PanelInsightEvent(panel_id=self.id, insight=insight))
        return found

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
            thread_id=self._thread_of(reply_to),
        )
        self._append(message)
        self._capture(message)
        self._changed.set()
        return message

    def _thread_of(self, reply_to: str | None) -> str | None:
        """A reply's thread is its root's id, however deep it answers (None: no reply)."""
        parent = next((m for m in self.messages if m.id == reply_to), None)
        if parent is None:
            return reply_to
        return parent.thread_id or parent.id
