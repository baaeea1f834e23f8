"""Who speaks next: one pure function per speaker policy, behind ``next_speaker``.

Only active agent members are ever picked: a human speaks when they post, never on the
orchestrator's call. A member that already posted ``max_consecutive`` messages in a row is not
picked again at once. When a policy cannot honour its own choice (the moderator named a
non-member, no side of a debate has anyone left, the graph allows no one), the pick falls back
to round robin and ``Choice.fallback`` is set with a reason saying why, for the orchestrator to
record.

Policies:

- round robin: the member after the last agent to speak, in member order. With
  ``rules.facilitated`` the moderator opens every cycle.
- strict alternation: two sides, by stance when any member holds ``for`` or ``against``
  (neutral and stance-less members join the smaller side, in member order), else by order
  (1st, 3rd, … against 2nd, 4th, …); the other side than the last agent's speaks, round robin
  within it.
- moderator: the moderator speaks after every other member; after the moderator, the member
  its reply names with a line ``NEXT: Name`` (the last such line), else its first ``@Name``.
- mention: the first active agent that the last message mentions as ``@Name`` (not its
  speaker), else round robin.
- graph: among those ``transitions[last speaker]`` allows, one the last message mentions, else
  the one that spoke least recently.
- manual: ``state.manual_pick`` (a human's ``panel next``) or None: nothing happens until then.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentplex.protocol.panels import (
    MemberSpec,
    PanelConfig,
    ParticipantKind,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels.insights import mentions
from agentplex.supervisor.panels.rules import PanelRules, find_member, moderator_of

_NEXT = re.compile(
    r"^[\s>*#-]*\**next(?:\s+speaker)?\**\s*[:=-]\s*\**\s*@?([A-Za-z0-9][A-Za-z0-9_-]*)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class SpeakerState:
    """What the policies look at. ``spoken`` lists who posted each member message so far, in
    order (agents and humans; no system messages, no reactions); the last speaker and how
    many messages in a row it posted are read from its end."""

    spoken: Sequence[str] = ()
    inactive: frozenset[str] = frozenset()
    """Members that failed or exited (compared ignoring case)."""
    last_text: str = ""
    """The text of the last member message (read for ``@Name`` mentions)."""
    moderator_reply: str | None = None
    """The moderator's last reply (read for ``NEXT: Name``)."""
    manual_pick: str | None = None
    _folded_inactive: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = frozenset(n.casefold() for n in self.inactive)
        object.__setattr__(self, "_folded_inactive", folded)

    @property
    def last_speaker(self) -> str | None:
        return self.spoken[-1] if self.spoken else None

    @property
    def consecutive(self) -> int:
        """Messages the last speaker posted in a row, at the end of ``spoken``."""
        if not self.spoken:
            return 0
        last = self.spoken[-1].casefold()
        count = 0
        for name in reversed(self.spoken):
            if name.casefold() != last:
                break
            count += 1
        return count

    def is_active(self, name: str) -> bool:
        return name.casefold() not in self._folded_inactive


@dataclass(frozen=True)
class Choice:
    """The member to speak next, how it was chosen, and whether the policy had to fall back."""

    name: str
    reason: str
    fallback: bool = False


def next_speaker(rules: PanelRules, config: PanelConfig, state: SpeakerState) -> Choice | None:
    """The next speaker under ``rules.speaker_policy``, or None when no one may speak now (a
    manual panel waiting for its pick, or no active agent within ``max_consecutive``)."""
    seats = _Seats(rules, config, state)
    if not seats.eligible:
        return None
    match rules.speaker_policy:
        case SpeakerPolicy.ROUND_ROBIN:
            return seats.round_robin()
        case SpeakerPolicy.STRICT_ALTERNATION:
            return _alternation(seats)
        case SpeakerPolicy.MODERATOR:
            return _moderated(seats)
        case SpeakerPolicy.MENTION:
            return _mentioned(seats)
        case SpeakerPolicy.GRAPH:
            return _graph(seats)
        case SpeakerPolicy.MANUAL:
            return _manual(seats)


class _Seats:
    """The members as the policies see them: order, who may speak, who spoke last."""

    def __init__(self, rules: PanelRules, config: PanelConfig, state: SpeakerState) -> None:
        self.rules, self.config, self.state = rules, config, state
        self.agents = [
            m.name
            for m in config.members
            if m.kind is ParticipantKind.AGENT and state.is_active(m.name)
        ]
        self.moderator = moderator_of(config)
        self.eligible = [n for n in self.agents if self.allowed(n)]

    def allowed(self, name: str) -> bool:
        """Active, an agent, and within ``max_consecutive``."""
        state = self.state
        last = state.last_speaker
        repeat = last is not None and last.casefold() == name.casefold()
        if repeat and state.consecutive >= self.rules.max_consecutive:
            return False
        return any(a.casefold() == name.casefold() for a in self.agents)

    def canonical(self, name: str) -> MemberSpec | None:
        return find_member(self.config, name)

    def last_agent(self, among: Sequence[str]) -> str | None:
        """Who of ``among`` spoke last (scanning back from the end of ``spoken``)."""
        folded = {n.casefold(): n for n in among}
        for name in reversed(self.state.spoken):
            if name.casefold() in folded:
                return folded[name.casefold()]
        return None

    def round_robin(
        self,
        among: Sequence[str] | None = None,
        reason: str = "round robin",
        fallback: bool = False,
    ) -> Choice | None:
        """The member of ``among`` (default: all agents) after the last of them to speak."""
        order = list(self.agents if among is None else among)
        if self.rules.facilitated and among is None and self.moderator in order:
            return self._facilitated(order, reason, fallback)
        last = self.last_agent(order)
        start = order.index(last) + 1 if last is not None else 0
        for offset in range(len(order)):
            name = order[(start + offset) % len(order)]
            if self.allowed(name):
                return Choice(name, reason, fallback)
        return None

    def _facilitated(self, order: list[str], reason: str, fallback: bool) -> Choice | None:
        """The moderator first, then each other agent once, then the moderator again."""
        assert self.moderator is not None
        others = [n for n in order if n != self.moderator]
        since = self._since_moderator()
        waiting = [n for n in others if n.casefold() not in (since or ()) and self.allowed(n)]
        if waiting and since is not None:
            return Choice(waiting[0], reason, fallback)
        if self.allowed(self.moderator):
            return Choice(self.moderator, f"{reason}: the facilitator opens the cycle", fallback)
        return Choice(waiting[0], reason, fallback) if waiting else None

    def _since_moderator(self) -> set[str] | None:
        """Who spoke since the moderator last did (None: the moderator has not spoken)."""
        assert self.moderator is not None
        seen: set[str] = set()
        for name in reversed(self.state.spoken):
            if name.casefold() == self.moderator.casefold():
                return seen
            seen.add(name.casefold())
        return None


def _sides(seats: _Seats) -> tuple[list[str], list[str]]:
    specs = [m for m in seats.config.members if m.name in seats.agents]
    if not any(m.stance in (Stance.FOR, Stance.AGAINST) for m in specs):
        return [m.name for m in specs[0::2]], [m.name for m in specs[1::2]]
    pro = [m.name for m in specs if m.stance is Stance.FOR]
    con = [m.name for m in specs if m.stance is Stance.AGAINST]
    for member in specs:
        if member.stance not in (Stance.FOR, Stance.AGAINST):
            (pro if len(pro) <= len(con) else con).append(member.name)
    order = {m.name: i for i, m in enumerate(specs)}
    return sorted(pro, key=order.__getitem__), sorted(con, key=order.__getitem__)


def _alternation(seats: _Seats) -> Choice | None:
    pro, con = _sides(seats)
    if not pro or not con:
        return seats.round_robin(
            reason="round robin: one side of the debate has no active member", fallback=True
        )
    last = seats.last_agent(seats.agents)
    side, label = (con, "against") if last in pro else (pro, "for")
    if last is None:
        side, label = pro, "for"
    choice = seats.round_robin(side, reason=f"strict alternation: the {label} side's turn")
    if choice is None:
        return seats.round_robin(
            reason=f"round robin: no one on the {label} side may speak now", fallback=True
        )
    return choice


def _moderated(seats: _Seats) -> Choice | None:
    moderator = seats.moderator
    others = [n for n in seats.agents if n != moderator]
    if moderator is None or moderator not in seats.agents:
        return seats.round_robin(others, "round robin: the moderator is not active", True)
    last = seats.state.last_speaker
    after_other = last is None or last.casefold() != moderator.casefold()
    if after_other and seats.allowed(moderator):
        return Choice(moderator, "the moderator picks who speaks")
    reply = seats.state.moderator_reply
    if reply is None:  # the moderator spoke last: its reply is the last message
        reply = seats.state.last_text
    named = _named_by(reply, [m.name for m in seats.config.members])
    if named is None:
        return seats.round_robin(others, "round robin: the moderator named no one", True)
    spec = seats.canonical(named)
    problem = _problem(seats, named, spec)
    if problem is not None:
        return seats.round_robin(others, f"round robin: the moderator named {problem}", True)
    assert spec is not None
    return Choice(spec.name, "named by the moderator")


def _named_by(reply: str, members: Sequence[str]) -> str | None:
    """The name a moderator's reply gives: its last ``NEXT: Name`` line, else its first
    ``@Name`` mention of a member."""
    found = _NEXT.findall(reply)
    if found:
        return str(found[-1])
    mentioned = mentions(reply, members)
    return mentioned[0] if mentioned else None


def _problem(seats: _Seats, name: str, spec: MemberSpec | None) -> str | None:
    """Why ``name`` cannot be picked, or None."""
    if spec is None:
        return f"{name!r}, who is not a member"
    if spec.kind is ParticipantKind.HUMAN:
        return f"{spec.name}, a human (humans speak when they post)"
    if spec.name == seats.moderator:
        return "itself"
    if not seats.state.is_active(spec.name):
        return f"{spec.name}, who is no longer active"
    if not seats.allowed(spec.name):
        return f"{spec.name}, who has spoken {seats.rules.max_consecutive} times in a row"
    return None


def _mentioned(seats: _Seats) -> Choice | None:
    last = seats.state.last_speaker
    for name in mentions(seats.state.last_text, seats.agents):
        if (last is None or name.casefold() != last.casefold()) and seats.allowed(name):
            return Choice(name, f"mentioned by {last}" if last else "mentioned")
    return seats.round_robin(reason="round robin: no active agent was mentioned")


def _graph(seats: _Seats) -> Choice | None:
    last = seats.last_agent(seats.agents)
    if last is None:
        return seats.round_robin(reason="graph: the first member opens")
    targets = _targets(seats, last)
    allowed = [n for n in seats.agents if n.casefold() in targets and seats.allowed(n)]
    if not allowed:
        return seats.round_robin(
            reason=f"round robin: the graph allows no active member after {last}", fallback=True
        )
    mentioned = mentions(seats.state.last_text, allowed)
    if mentioned:
        return Choice(mentioned[0], f"graph: {last} -> {mentioned[0]}, mentioned")
    name = _least_recent(allowed, seats.state.spoken)
    return Choice(name, f"graph: {last} -> {name}")


def _least_recent(names: Sequence[str], spoken: Sequence[str]) -> str:
    """The one of ``names`` that spoke least recently (never: first, in order), scanning
    back only as far as needed."""
    waiting = {n.casefold(): n for n in names}
    for name in reversed(spoken):
        if len(waiting) == 1:
            break
        waiting.pop(name.casefold(), None)
    return next(n for n in names if n.casefold() in waiting)


def _targets(seats: _Seats, source: str) -> set[str]:
    for key, names in seats.config.transitions.items():
        if key.casefold() == source.casefold():
            return {n.casefold() for n in names}
    return set()


def _manual(seats: _Seats) -> Choice | None:
    pick = seats.state.manual_pick
    if pick is None:
        return None
    spec = seats.canonical(pick)
    if spec is None or not seats.allowed(spec.name):
        return None
    return Choice(spec.name, "picked by hand")
