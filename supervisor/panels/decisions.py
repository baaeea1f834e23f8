"""Position rounds (``panel decide``): a proposal put to the voting members, their positions
read back, the decision and the consensus it reaches recorded.

A round takes the panel's floor (``Orchestrator.floor``): it starts between two turns, never
interleaved with a member's turn, and the discussion waits until it is over. Then:

- every voting agent member (``MemberSpec.votes``, still active) is asked at once — a blind
  poll, each told what it has not seen yet and ``consensus.position_request`` — through the
  same member-turn machinery as a discussion turn; its reply is recorded as a ``POSITION``
  message and read with ``consensus.vote_from_reply`` (no position stated: an abstention);
- every voting human member has ``human_wait_s`` to post a ``POSITION: …`` line with
  ``panel say`` after the round opened; the last one it posts counts, none is an abstention.
  Its message stays as it posted it (the vote names it); agents are never waited on for
  longer than the daemon's turn timeout;
- ``consensus.decision`` gives the level (threshold from ``rules_for(config)``); the decision
  goes to ``insights/decision_history.json``, the level to ``insights/consensus_tracking.json``
  (both replaced atomically, both derived from the decisions so far), the action items it
  names to ``insights/insights.jsonl``, a ``SYSTEM`` message states the outcome, and
  ``panel.decision`` is published.

A panel paused can still decide (its floor is free). A panel that ends during the round
records nothing: the request fails with ``panel_ended``. A round cut by a daemon crash is
not asked again (the request failed with the daemon); the members' replies that arrived are
in the log. A panel that votes puts its members' ``DECISION:`` proposals through the same
round itself (proposals.py); such a round cut by a crash is run again after the restart.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Final

import anyio
import msgspec
import structlog

from agentplex.protocol.errors import AgentplexError, InvalidArgument, PanelFinished
from agentplex.protocol.events import (
    PanelDecisionEvent,
    PanelInsightEvent,
    PanelMessageEvent,
    PanelTurnStarted,
)
from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    Insight,
    InsightKind,
    MemberSpec,
    MessageType,
    PanelMessage,
    ParticipantKind,
    Position,
    Vote,
)
from agentplex.supervisor.bus import Gap, Subscription
from agentplex.supervisor.panels import consensus, insights
from agentplex.supervisor.panels.member_turn import MemberReply
from agentplex.supervisor.panels.rules import rules_for
from agentplex.supervisor.panels.store import CONSENSUS
from agentplex.supervisor.validation import require_text

if TYPE_CHECKING:
    from agentplex.supervisor.panels.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

MAX_HUMAN_WAIT_S: Final = 3600.0
"""The longest a position round waits for its human voters."""
NO_HUMAN_POSITION: Final = "(no position posted in time)"


class ConsensusPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``insights/consensus_tracking.json``: the level after each decision."""

    decision_id: str
    ts: float
    proposal: str
    level: ConsensusLevel
    agreement: float
    votes: int
    counted: int
    """Votes that counted (abstentions do not)."""


async def decide(
    panel: Orchestrator,
    proposal: str,
    *,
    veto: bool,
    human_wait_s: float,
    source: str | None = None,
) -> Decision:
    """Run a position round on ``proposal`` once the floor is free and record its decision
    (``source``: the insight it settles, when the panel votes on a member's proposal)."""
    require_text("proposal", proposal)
    if not (math.isfinite(human_wait_s) and 0 <= human_wait_s <= MAX_HUMAN_WAIT_S):
        raise InvalidArgument(
            f"human_wait_s must be 0 to {MAX_HUMAN_WAIT_S:g} seconds, not {human_wait_s!r}"
        )
    _require_live(panel)
    async with panel.floor:
        _require_live(panel)
        votes = await _position_round(panel, proposal, veto=veto, human_wait_s=human_wait_s)
        _require_live(panel)  # ended during the round: its members were cut off
        threshold = rules_for(panel.config).consensus_threshold
        record = consensus.decision(
            panel.id, proposal, votes, threshold=threshold, now=time.time(), veto=veto
        )
        record = msgspec.structs.replace(record, source=source)
        _record(panel, record)
    return record


def _require_live(panel: Orchestrator) -> None:
    if panel.metadata.status.ended or panel._end_requested:
        raise PanelFinished(f"panel {panel.id} has ended ({panel.metadata.status})")


def voters(panel: Orchestrator) -> tuple[list[MemberSpec], list[MemberSpec]]:
    """The voting agent members still active, and the voting human members."""
    voting = [m for m in panel.config.members if m.votes]
    agents = [m for m in voting if m.kind is ParticipantKind.AGENT and panel._active(m.name)]
    humans = [m for m in voting if m.kind is ParticipantKind.HUMAN]
    return agents, humans


async def _position_round(
    panel: Orchestrator, proposal: str, *, veto: bool, human_wait_s: float
) -> list[Vote]:
    agents, humans = voters(panel)
    if not agents and not humans:
        raise InvalidArgument(f"panel {panel.id[:8]} has no voting member left")
    request = consensus.position_request(proposal, veto=veto)
    prompts = {m.name: f"{_catch_up(panel, m)}\n\n{request}" for m in agents}
    found: dict[str, Vote] = {}
    # Subscribed before the round is announced: a human's answer to it cannot be missed.
    with panel._bus.subscribe(f"panel.message.{panel.id}".encode()) as posts:
        _say(panel, _opening(proposal, agents, humans, human_wait_s), MessageType.SYSTEM)
        async with anyio.create_task_group() as tg:
            for member in agents:
                tg.start_soon(_ask_agent, panel, member, prompts[member.name], found)
            if humans:
                tg.start_soon(_await_humans, posts, humans, human_wait_s, found)
    order = [m.name for m in panel.config.members]
    return sorted(found.values(), key=lambda vote: order.index(vote.participant))


def _opening(
    proposal: str, agents: list[MemberSpec], humans: list[MemberSpec], wait: float
) -> str:
    names = ", ".join(m.name for m in [*agents, *humans])
    text = f"Position round on: {proposal.strip()}\nVoting: {names}."
    if humans:
        text += (
            f"\nHuman members: post 'POSITION: agree|agree with conditions|disagree|abstain"
            f" — reason' with panel say within {wait:g} s."
        )
    return text


async def _ask_agent(
    panel: Orchestrator, member: MemberSpec, prompt: str, found: dict[str, Vote]
) -> None:
    """One agent's position: its reply as a POSITION message, read as its vote."""
    turn, rnd = panel.metadata.turn, panel.metadata.round
    panel._publish(
        PanelTurnStarted(
            panel_id=panel.id, participant=member.name, turn=turn, round=rnd, ts=time.time()
        )
    )
    await panel._exits.settle(member.name)  # its last turn's process over (aftermath.py)
    try:
        with anyio.CancelScope(shield=True):  # a session started is one recorded
            watch = await panel._hand_over(member, prompt)
    except AgentplexError as exc:
        panel._member_left(member.name, f"its position turn could not start: {exc.message}")
        reply = MemberReply(text="", latency_ms=0, failed=exc.message, session_ended=True)
    else:
        reply = await watch.wait()
        if reply.session_ended:
            panel._member_left(member.name, reply.failed or "its session ended")
    if reply.failed is not None:
        found[member.name] = Vote(
            participant=member.name,
            position=Position.ABSTAIN,
            reason=f"(no reply: {reply.failed})",
        )
        _say(panel, f"({member.name} gave no position: {reply.failed})", MessageType.SYSTEM)
        panel._exits.follow(member.name, False)
        return
    text = reply.text[: panel.config.max_message_chars]
    found[member.name] = consensus.vote_from_reply(member.name, text)
    message = panel._message(
        member.name,
        text,
        turn=turn,
        round=rnd,
        type=MessageType.POSITION,
        usage=reply.usage,
        latency_ms=reply.latency_ms,
    )
    panel._append(message)
    panel._capture(message)
    panel._exits.follow(member.name, not reply.session_ended)


async def _await_humans(
    posts: Subscription, humans: list[MemberSpec], wait: float, found: dict[str, Vote]
) -> None:
    """Each voting human's last position posted in time; an abstention for the silent."""
    names = {m.name.casefold(): m.name for m in humans}
    stated: dict[str, Vote] = {}
    with anyio.move_on_after(wait):
        while len(stated) < len(names):
            item = await posts.receive()
            if isinstance(item, Gap):
                continue  # a burst of messages: a human's post is never that far behind
            event = item.event
            if not isinstance(event, PanelMessageEvent) or event.updated:
                continue
            name = names.get(event.message.participant.casefold())
            parsed = consensus.parse_position(event.message.text) if name else None
            if name is not None and parsed is not None:
                position, reason = parsed
                stated[name] = Vote(participant=name, position=position, reason=reason)
    for name in names.values():
        found[name] = stated.get(name) or Vote(
            participant=name, position=Position.ABSTAIN, reason=NO_HUMAN_POSITION
        )


def _record(panel: Orchestrator, record: Decision) -> None:
    """The decision in its files, its outcome in the log, its action items, the event."""
    panel.decisions.append(record)
    panel._store.save_decisions(panel.id, panel.decisions)
    panel._store.save_json(panel.id, CONSENSUS, tracking(panel.decisions))
    outcome = _say(panel, outcome_text(record), MessageType.SYSTEM)
    for insight in _action_items(panel, record, outcome):
        panel._store.append_insight(insight)
        panel._publish(insights_event(insight))
    panel._publish(PanelDecisionEvent(panel_id=panel.id, decision=record))
    log.info(
        "panel_decision",
        panel_id=panel.id,
        decision_id=record.id,
        level=record.level,
        agreement=round(record.agreement, 3),
    )


def tracking(decisions: list[Decision]) -> list[ConsensusPoint]:
    """``consensus_tracking.json``: the level and agreement of each decision, in order."""
    return [
        ConsensusPoint(
            decision_id=d.id,
            ts=d.ts,
            proposal=d.proposal,
            level=d.level,
            agreement=d.agreement,
            votes=len(d.votes),
            counted=sum(1 for v in d.votes if v.position is not Position.ABSTAIN),
        )
        for d in decisions
    ]


def outcome_text(record: Decision) -> str:
    votes = "; ".join(f"{v.participant}: {v.position}" for v in record.votes) or "no votes"
    level = record.level.value.replace("_", " ")
    return (
        f"Decision on: {record.proposal}\n"
        f"Consensus: {level} (agreement {record.agreement:.3f}) — {votes}"
    )


def _action_items(panel: Orchestrator, record: Decision, outcome: PanelMessage) -> list[Insight]:
    """The decision's action items not already caught from a member's marked line; a
    condition's owner is the member who set it."""
    caught = {
        i.text
        for m in panel.messages
        if m.type is MessageType.POSITION
        for i in insights.capture(m, panel.config.markers, [], now=m.ts)
    }
    owners = {
        f"{v.reason.strip()} (condition of {v.participant})": v.participant
        for v in record.votes
        if v.position is Position.AGREE_WITH_CONDITIONS
    }
    return [
        Insight(
            id=f"{record.id}-a{n}",
            panel_id=panel.id,
            kind=InsightKind.ACTION_ITEM,
            text=item,
            participant=owners.get(item, "system"),
            message_id=outcome.id,
            ts=record.ts,
            responsible=owners.get(item),
        )
        for n, item in enumerate(record.action_items, 1)
        if item not in caught
    ]


def insights_event(insight: Insight) -> PanelInsightEvent:
    return PanelInsightEvent(panel_id=insight.panel_id, insight=insight)


def _catch_up(panel: Orchestrator, member: MemberSpec) -> str:
    """What the member has not seen yet (its brief too, if it has not spoken)."""
    return panel._plan.sequential_prompt(member, panel.messages, panel._resumable(member))


def _say(panel: Orchestrator, text: str, kind: MessageType) -> PanelMessage:
    message = panel._message(
        "system", text, turn=panel.metadata.turn, round=panel.metadata.round, type=kind
    )
    panel._append(message)
    return message
