"""What happens next in a panel: who speaks, what each member is told, per round shape.

Everything here is derived from the message log (and the members still active), so a
restart plans exactly what the crash interrupted.

- Sequential: one member at a time, picked by the panel's speaker policy
  (``speakers.next_speaker``). A round is as many turns as the round had active agents (a
  member that left after its turn in it — its turn failed, or its process after its reply
  — still counts that turn, however soon its leaving is known), so under round robin every
  active agent speaks once per round; under the other policies some may speak twice and
  some not at all. Each member is told what it has not seen since its last message (its
  own conversation goes on through its CLI's resume id); a member whose backend cannot
  resume is re-sent its brief and the discussion pruned to ``history_budget_chars``.
- Simultaneous (Du et al. 2023): every active agent answers each round in parallel; round r's
  prompt carries exactly the others' round r-1 answers (``prompts.simultaneous``). All prompts
  of a round are made before any answer of it exists, so members are blind to their round.
  The speaker policy plays no part (and humans' posts are not shown: rounds are answers).
- Review: round 0 is answered as a simultaneous round 0; in every later round each member
  ranks the others' round-0 answers, shown anonymised as "Response A/B/C" in an order drawn
  per panel, round and member (so a re-asked turn shows the same labels). The label → member
  maps of a round are written to ``insights/review_round_<r>.json`` before any prompt goes
  out, and never sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    ParticipantKind,
    RoundShape,
    SpeakerPolicy,
)
from agentplex.supervisor.panels import prompts, speakers
from agentplex.supervisor.panels.rules import find_member, rules_for

Resumable = Callable[[MemberSpec], bool]
"""Whether a member's backend carries its conversation on (resume id or a long-lived
process); one that cannot is re-sent its brief and the pruned history each turn."""


def review_file(rnd: int) -> str:
    """Where the label → member maps of review round ``rnd`` are kept (in the panel dir)."""
    return f"insights/review_round_{rnd}.json"


def _counted(message: PanelMessage) -> bool:
    # A position (panel decide, decisions.py) answers a poll: it is not a turn.
    return not message.interrupted and message.type is not MessageType.POSITION


def _said(message: PanelMessage) -> bool:
    return message.type is not MessageType.SYSTEM and _counted(message)


class Rounds:
    """The plan of one panel's rounds (pure: the orchestrator carries it out)."""

    def __init__(self, config: PanelConfig, panel_id: str) -> None:
        self.config = config
        self.rules = rules_for(config)
        self._panel_id = panel_id
        self._agents = [m for m in config.members if m.kind is ParticipantKind.AGENT]

    @property
    def parallel(self) -> bool:
        """Simultaneous and review rounds hand every turn of a round out at once."""
        return self.config.shape is not RoundShape.SEQUENTIAL

    # ------------------------------------------------------------------ sequential

    def round_over(
        self, messages: Sequence[PanelMessage], rnd: int, inactive: frozenset[str]
    ) -> bool:
        """Whether round ``rnd`` has had its turns (see the module docstring)."""
        if self.parallel:
            return not self.owing(messages, rnd, inactive)
        names = {m.name for m in self._agents}
        turns = [m for m in messages if m.round == rnd and _counted(m) and m.participant in names]
        gone = {m.participant for m in turns} & inactive  # left after its turn of this round
        quota = sum(1 for m in self._agents if m.name not in inactive) + len(gone)
        return len(turns) >= quota

    def next_speaker(
        self,
        messages: Sequence[PanelMessage],
        inactive: frozenset[str],
        manual_pick: str | None,
    ) -> speakers.Choice | None:
        """The next sequential speaker under the panel's policy (None: wait for a change)."""
        said = [m for m in messages if _said(m)]
        state = speakers.SpeakerState(
            spoken=[m.participant for m in said],
            inactive=inactive,
            last_text=said[-1].text if said else "",
            manual_pick=manual_pick,
        )
        return speakers.next_speaker(self.rules, self.config, state)

    def check_pick(self, name: str, inactive: frozenset[str]) -> str:
        """The member a human's ``panel next NAME`` picks (its name as configured), or
        ``InvalidArgument`` saying why it cannot be picked."""
        policy = self.rules.speaker_policy
        if policy is not SpeakerPolicy.MANUAL or self.parallel:
            raise InvalidArgument(
                f"this panel picks its speakers itself ({policy}, {self.config.shape} rounds): "
                "'panel next' is for a sequential panel with the manual speaker policy"
            )
        member = find_member(self.config, name)
        if member is None or member.kind is not ParticipantKind.AGENT:
            names = ", ".join(m.name for m in self._agents)
            raise InvalidArgument(f"{name!r} is not an agent member of the panel ({names})")
        if member.name in inactive:
            raise InvalidArgument(f"{member.name} has left the panel: pick another member")
        return member.name

    def sequential_prompt(
        self, member: MemberSpec, messages: Sequence[PanelMessage], resumable: bool
    ) -> str:
        """Its first turn: its brief, and what was said before it; later: what it has not
        seen since its last message (the rest is in its own conversation), or for a member
        that cannot resume, its brief and the pruned discussion."""
        config = self.config
        own = [
            i
            for i, m in enumerate(messages)
            if m.participant == member.name and m.type is not MessageType.SYSTEM
        ]
        own = [i for i in own if not messages[i].interrupted]
        if own and not resumable:
            return prompts.without_resume(config, member, messages)
        if own:
            return prompts.catch_up(config, member, _unseen(member, messages, own[-1]))
        brief = prompts.first_prompt(config, member)
        earlier = [m for m in messages if m.participant != member.name]
        if not any(_said(m) for m in earlier):
            return brief
        return f"{brief}\n\n{prompts.catch_up(config, member, earlier)}"

    # ------------------------------------------------------------------ parallel

    def owing(
        self, messages: Sequence[PanelMessage], rnd: int, inactive: frozenset[str]
    ) -> list[MemberSpec]:
        """The active agents without a reply (or a failure) in round ``rnd`` yet."""
        answered = {m.participant for m in messages if m.round == rnd and _counted(m)}
        return [m for m in self._agents if m.name not in inactive and m.name not in answered]

    def parallel_prompts(
        self,
        messages: Sequence[PanelMessage],
        rnd: int,
        members: Sequence[MemberSpec],
        resumable: Resumable,
    ) -> tuple[list[tuple[MemberSpec, str]], dict[str, dict[str, str]]]:
        """Each member's prompt for round ``rnd``, and (review rounds) each reviewer's
        label → member map, to be stored and never sent."""
        if self.config.shape is RoundShape.REVIEW and rnd > 0:
            return self._review(messages, rnd, members)
        previous = [m for m in messages if m.round == rnd - 1]
        handed = []
        for member in members:
            prompt = prompts.simultaneous(self.config, member, rnd, previous)
            if rnd > 0 and not resumable(member):  # it has no brief in its conversation
                prompt = f"{prompts.first_prompt(self.config, member)}\n\n{prompt}"
            handed.append((member, prompt))
        return handed, {}

    def _review(
        self, messages: Sequence[PanelMessage], rnd: int, members: Sequence[MemberSpec]
    ) -> tuple[list[tuple[MemberSpec, str]], dict[str, dict[str, str]]]:
        names = {m.name for m in self._agents}
        answers = [m for m in messages if m.round == 0 and _said(m) and m.participant in names]
        handed, maps = [], {}
        for member in members:
            rng = random.Random(f"{self._panel_id}:{rnd}:{member.name}")
            prompt, labels = prompts.review(self.config, member, answers, rng)
            handed.append((member, prompt))
            maps[member.name] = labels
        return handed, maps


def _unseen(member: MemberSpec, messages: Sequence[PanelMessage], last: int) -> list[PanelMessage]:
    """What the member has not been told: everything after its last reply, and what others
    posted (a human's ``panel say``) while that reply was being written, which the log holds
    before the reply. The turn was handed over ``latency_ms`` before the reply."""
    reply = messages[last]
    handed_over = reply.ts - (reply.latency_ms or 0) / 1000
    return [
        m
        for i, m in enumerate(messages)
        if m.participant != member.name and (i > last or (i < last and m.ts > handed_over))
    ]
