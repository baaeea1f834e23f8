"""A voting panel's own votes: each ``DECISION:`` a member proposes is put to the vote.

A panel whose rules check consensus by voting (``decision_making`` by default; the
``voting`` knob turns it off) does not leave its decisions to ``panel decide``: every
``DECISION: …`` line of an agent member's reply (a marker of kind decision, as
:func:`insights.capture` reads it) is a proposal, and the orchestrator runs the same
position round ``panel decide`` runs (:func:`decisions.decide`) on its text before it
checks whether to stop — so a reply that stops the panel (``--until marker=DECISION:``,
the last round) is voted on before ``panel.ended``, and the next turn waits for the vote.

The decision records which proposal it settled (``Decision.source``, the insight id
``<message id>-i<n>``) in ``insights/decision_history.json``, written atomically before the
vote's outcome is announced. What is still to vote is derived from the message log minus
those sources, so after a crash a proposal whose decision was recorded is never voted
again, and one whose round the crash cut is voted again from the start (the positions the
cut round collected stay in the log). Humans' posts propose nothing (they may run
``panel decide``); a panel ended by request or by its clock stops at once, unvoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from agentplex.protocol.errors import InvalidArgument, PanelFinished
from agentplex.protocol.panels import (
    Decision,
    Insight,
    InsightKind,
    MessageType,
    PanelConfig,
    PanelMessage,
    ParticipantKind,
)
from agentplex.supervisor.panels import decisions, insights
from agentplex.supervisor.panels.rules import rules_for

if TYPE_CHECKING:
    from agentplex.supervisor.panels.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

HUMAN_WAIT_S: Final = 30.0
"""How long a panel's own vote waits for its voting human members' ``POSITION:`` posts."""


def votes_itself(config: PanelConfig) -> bool:
    """Whether the panel puts its members' proposals to the vote itself."""
    rules = rules_for(config)
    return rules.consensus_check and rules.voting


def proposals_in(
    config: PanelConfig, message: PanelMessage, found: Sequence[Insight] | None = None
) -> list[Insight]:
    """The ``DECISION:`` lines of one agent member's reply, as insights (ids stable);
    ``found``: the message's insights if already captured."""
    agents = {m.name for m in config.members if m.kind is ParticipantKind.AGENT}
    if message.type is not MessageType.CONVERSATION or message.participant not in agents:
        return []  # positions, system notes, humans' posts and cut replies propose nothing
    if found is None:
        names = [m.name for m in config.members]
        found = insights.capture(message, config.markers, names, now=message.ts)
    return [i for i in found if i.kind is InsightKind.DECISION]


def unvoted(
    config: PanelConfig, messages: Iterable[PanelMessage], recorded: Sequence[Decision]
) -> list[Insight]:
    """The proposals of ``messages`` that no recorded decision settled yet, in order."""
    if not votes_itself(config):
        return []
    settled = {d.source for d in recorded if d.source is not None}
    return [i for m in messages for i in proposals_in(config, m) if i.id not in settled]


class ProposalVotes:
    """The proposals of one panel waiting for their vote; the orchestrator notes each reply
    (:meth:`note`) and lets the votes run between turns (:meth:`run_pending`)."""

    def __init__(self, panel: Orchestrator) -> None:
        self._panel = panel
        self._on = votes_itself(panel.config)
        self.pending = unvoted(panel.config, panel.messages, panel.decisions)
        """Read once from the log (a restart's unfinished votes), then kept up by note()."""

    def note(self, message: PanelMessage, found: Sequence[Insight]) -> None:
        """A reply just recorded, with the insights captured from it: its proposals wait
        for their vote."""
        if self._on:
            self.pending += proposals_in(self._panel.config, message, found)

    async def run_pending(self) -> None:
        """Vote on every waiting proposal, in order, each once the floor is free."""
        while self.pending:
            proposal = self.pending[0]
            try:
                await decisions.decide(
                    self._panel,
                    proposal.text,
                    veto=False,
                    human_wait_s=HUMAN_WAIT_S,
                    source=proposal.id,
                )
            except PanelFinished:
                return  # ended during the round: nothing recorded, nothing more to vote
            except InvalidArgument as exc:  # no voting member left: the panel is stopping
                log.info("panel_proposal_not_voted", panel_id=self._panel.id, reason=exc.message)
            self.pending.pop(0)
