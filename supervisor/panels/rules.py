"""A panel's rules: the defaults each panel type comes with, the config's overrides, and the
checks a panel config must pass before anything is started or written.

Defaults by type (the seed's ``_generate_session_rules``, made explicit):

========================  ==================  ===========  =======  =========  ======
type                      speaker policy      consecutive  stances  moderator  voting
========================  ==================  ===========  =======  =========  ======
``multi_persona``         round robin         3            yes      optional   no
``debate``                strict alternation  2            yes      optional   no
``brainstorm``            round robin         1            no       optional   no
``focus_group``           round robin         1            no       optional   no
``expert_consultation``   moderator selects   1            no       required   no
``decision_making``       round robin         2            yes      optional   yes
========================  ==================  ===========  =======  =========  ======

Stances (for / against / neutral) are positions a member argues; a brainstorm builds on ideas,
a focus group collects each member's own reactions and an expert consultation asks for advice,
so those three refuse them. In a focus group the moderator (the facilitator) opens each cycle.
Every knob the config sets (``speaker_policy``, ``max_consecutive``, ``consensus_threshold``,
``require_moderator``, ``voting``, ``anonymous_voting``, ``min_participants``,
``max_participants``, ``max_rounds``) overrides the type's default.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TypeVar

import msgspec

from agentplex.protocol.errors import InvalidArgument, InvalidName, UnknownBackend, UnknownPersona
from agentplex.protocol.panels import (
    MemberSpec,
    PanelConfig,
    PanelType,
    ParticipantKind,
    ParticipantRole,
    SpeakerPolicy,
)
from agentplex.supervisor.panels import consensus
from agentplex.supervisor.panels.termination import parse_until

MIN_PARTICIPANTS = 2
MAX_PARTICIPANTS = 8
DEFAULT_MAX_ROUNDS = 3
"""Rounds a panel runs when neither ``max_rounds`` nor an ``--until`` condition is given."""
DEFAULT_CONSENSUS_THRESHOLD = 0.6
"""A decision counts as consensus (a simple majority) from 3 in 5 agreeing: 2 of 3 is one
(the seed's 0.7 would make it none); ``consensus.agreement_bar`` reads it exactly."""
MAX_TOPIC_CHARS = 4_000
SYSTEM_PARTICIPANT = "system"
"""The orchestrator's own name in the message log: no member may take it."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A member name: what ``@Name`` mentions, ``NEXT: Name`` and ``participants/<name>.json``
can all carry unchanged."""


class PanelRules(msgspec.Struct, frozen=True, kw_only=True):
    """How a panel runs, once the type's defaults and the config's knobs are merged."""

    type: PanelType
    speaker_policy: SpeakerPolicy
    max_consecutive: int
    """Messages one member may post in a row (a fallback picks someone else beyond it)."""
    stances: bool
    """Members may hold a stance (for / against / neutral) and their positions are tracked."""
    require_moderator: bool
    consensus_check: bool
    """A proposal is put to the voting members and their consensus measured."""
    consensus_threshold: float
    voting: bool
    anonymous_voting: bool
    min_participants: int = MIN_PARTICIPANTS
    max_participants: int = MAX_PARTICIPANTS
    max_rounds: int | None = DEFAULT_MAX_ROUNDS
    """None: the ``--until`` conditions alone end the panel."""
    facilitated: bool = False
    """The moderator (facilitator) opens every round-robin cycle."""
    idea_building: bool = False
    """Members are asked to build on the ideas before theirs (brainstorm)."""

    @classmethod
    def for_type(cls, panel_type: PanelType) -> PanelRules:
        """The defaults of one panel type, before any config knob."""
        return _DEFAULTS[panel_type]


def _rules(
    panel_type: PanelType, policy: SpeakerPolicy, consecutive: int, **kw: bool
) -> PanelRules:
    return PanelRules(
        type=panel_type,
        speaker_policy=policy,
        max_consecutive=consecutive,
        stances=kw.get("stances", False),
        require_moderator=kw.get("require_moderator", False),
        consensus_check=kw.get("consensus_check", False),
        consensus_threshold=DEFAULT_CONSENSUS_THRESHOLD,
        voting=kw.get("voting", False),
        anonymous_voting=False,
        facilitated=kw.get("facilitated", False),
        idea_building=kw.get("idea_building", False),
    )


_RR = SpeakerPolicy.ROUND_ROBIN
_T = TypeVar("_T")
_DEFAULTS: dict[PanelType, PanelRules] = {
    PanelType.MULTI_PERSONA: _rules(PanelType.MULTI_PERSONA, _RR, 3, stances=True),
    PanelType.DEBATE: _rules(PanelType.DEBATE, SpeakerPolicy.STRICT_ALTERNATION, 2, stances=True),
    PanelType.BRAINSTORM: _rules(PanelType.BRAINSTORM, _RR, 1, idea_building=True),
    PanelType.FOCUS_GROUP: _rules(PanelType.FOCUS_GROUP, _RR, 1, facilitated=True),
    PanelType.EXPERT_CONSULTATION: _rules(
        PanelType.EXPERT_CONSULTATION, SpeakerPolicy.MODERATOR, 1, require_moderator=True
    ),
    PanelType.DECISION_MAKING: _rules(
        PanelType.DECISION_MAKING, _RR, 2, stances=True, consensus_check=True, voting=True
    ),
}


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def rules_for(config: PanelConfig) -> PanelRules:
    """The type's defaults overridden by every knob the config sets."""
    base = PanelRules.for_type(config.type)
    # With an explicit --until and no --rounds, the conditions alone end the panel.
    default_rounds = base.max_rounds if not config.until else None
    return msgspec.structs.replace(
        base,
        speaker_policy=_pick(config.speaker_policy, base.speaker_policy),
        max_consecutive=_pick(config.max_consecutive, base.max_consecutive),
        consensus_threshold=_pick(config.consensus_threshold, base.consensus_threshold),
        require_moderator=_pick(config.require_moderator, base.require_moderator),
        voting=_pick(config.voting, base.voting),
        anonymous_voting=_pick(config.anonymous_voting, base.anonymous_voting),
        min_participants=_pick(config.min_participants, base.min_participants),
        max_participants=_pick(config.max_participants, base.max_participants),
        max_rounds=_pick(config.max_rounds, default_rounds),
    )


def find_member(config: PanelConfig, name: str) -> MemberSpec | None:
    """The member called ``name``, compared case-insensitively (as ``@name`` is)."""
    folded = name.casefold()
    return next((m for m in config.members if m.name.casefold() == folded), None)


def moderator_of(config: PanelConfig) -> str | None:
    """The moderator's member name: ``config.moderator``, else the one member whose role is
    moderator, else None (``validate`` refuses a moderator who is not a member, and two
    members with the moderator role when ``config.moderator`` does not choose)."""
    if config.moderator is not None:
        member = find_member(config, config.moderator)
        return member.name if member else None
    named = [m.name for m in config.members if m.role is ParticipantRole.MODERATOR]
    return named[0] if len(named) == 1 else None


def validate(
    config: PanelConfig, known_personas: Collection[str], known_backends: Collection[str]
) -> None:
    """Refuse a config the panel could not run, before anything is started or written.

    Raises ``InvalidArgument`` (counts, moderator, stances, transitions, knobs, ``--until``),
    ``InvalidName`` (a member name), ``UnknownPersona`` or ``UnknownBackend``; each message
    names the offending member or value."""
    rules = rules_for(config)
    _check_knobs(config, rules)
    _check_topic(config.topic)
    _check_counts(config, rules)
    _check_names(config.members)
    for member in config.members:
        _check_member(config, rules, member, known_personas, known_backends)
    _check_moderator(config, rules)
    _check_transitions(config, rules)
    condition = parse_until(config.until, max_rounds=rules.max_rounds)
    if condition.needs_moderator and moderator_of(config) is None:
        raise InvalidArgument("--until verdict needs a moderator (--moderator NAME)")


def _check_knobs(config: PanelConfig, rules: PanelRules) -> None:
    bounded = (MIN_PARTICIPANTS, MAX_PARTICIPANTS)
    if not bounded[0] <= rules.min_participants <= rules.max_participants <= bounded[1]:
        raise InvalidArgument(
            f"participants must be within {bounded[0]} to {bounded[1]} with min ≤ max "
            f"(got min {rules.min_participants}, max {rules.max_participants})"
        )
    positive = {
        "max_consecutive": rules.max_consecutive,
        "max_rounds": rules.max_rounds,
        "max_message_chars": config.max_message_chars,
    }
    for knob, value in positive.items():
        if value is not None and value < 1:
            raise InvalidArgument(f"{knob} must be at least 1 (got {value})")
    if config.history_budget_chars < 0:
        raise InvalidArgument("history_budget_chars must be 0 or more")
    consensus.agreement_bar(rules.consensus_threshold)  # over 0.5, at most 1, or refused


def _check_topic(topic: str) -> None:
    if not topic.strip():
        raise InvalidArgument("a panel needs a topic (--topic TEXT)")
    if len(topic) > MAX_TOPIC_CHARS:
        raise InvalidArgument(f"the topic is over {MAX_TOPIC_CHARS} characters ({len(topic)})")


def _check_counts(config: PanelConfig, rules: PanelRules) -> None:
    count = len(config.members)
    if count < rules.min_participants:
        raise InvalidArgument(
            f"a panel needs at least {rules.min_participants} members (got {count})"
        )
    if count > rules.max_participants:
        raise InvalidArgument(
            f"a panel takes at most {rules.max_participants} members (got {count})"
        )
    if not any(m.kind is ParticipantKind.AGENT for m in config.members):
        raise InvalidArgument("a panel needs at least one agent member (all are humans)")
    if rules.voting and not any(m.votes for m in config.members):
        raise InvalidArgument(f"panel type {config.type} votes: at least one member must vote")


def _check_names(members: Sequence[MemberSpec]) -> None:
    seen: dict[str, str] = {}
    for member in members:
        if not _NAME.fullmatch(member.name):
            raise InvalidName(
                f"invalid member name {member.name[:40]!r}: use 1 to 64 letters, digits, '_' or "
                "'-', starting with a letter or digit"
            )
        folded = member.name.casefold()
        if folded == SYSTEM_PARTICIPANT:
            raise InvalidName(f"member name {member.name!r} is reserved for the orchestrator")
        if folded in seen:
            raise InvalidArgument(
                f"two members are called {seen[folded]!r} and {member.name!r} "
                "(names are compared ignoring case): give one a distinct name"
            )
        seen[folded] = member.name


def _check_member(
    config: PanelConfig,
    rules: PanelRules,
    member: MemberSpec,
    known_personas: Collection[str],
    known_backends: Collection[str],
) -> None:
    if member.stance is not None and not rules.stances:
        raise InvalidArgument(
            f"panel type {config.type} takes no stances (member {member.name} has @{member.stance})"
        )
    if member.kind is ParticipantKind.HUMAN:
        if member.persona or member.backend or member.model:
            raise InvalidArgument(f"human member {member.name} takes no persona, backend or model")
        return
    personas = {p.casefold() for p in known_personas}
    if member.persona is not None and member.persona.casefold() not in personas:
        raise UnknownPersona(f"member {member.name}: no persona named {member.persona!r}")
    if member.backend is not None and member.backend not in known_backends:
        raise UnknownBackend(
            f"member {member.name}: no backend {member.backend!r} "
            f"(known: {', '.join(sorted(known_backends))})"
        )


def _check_moderator(config: PanelConfig, rules: PanelRules) -> None:
    names = ", ".join(m.name for m in config.members)
    if config.moderator is not None and find_member(config, config.moderator) is None:
        raise InvalidArgument(f"moderator {config.moderator!r} is not a member ({names})")
    roles = [m.name for m in config.members if m.role is ParticipantRole.MODERATOR]
    if config.moderator is None and len(roles) > 1:
        raise InvalidArgument(
            f"{', '.join(roles)} all have the moderator role: choose one with --moderator NAME"
        )
    moderator = moderator_of(config)
    if moderator is None and (
        rules.require_moderator or rules.speaker_policy is SpeakerPolicy.MODERATOR
    ):
        raise InvalidArgument(f"panel type {config.type} needs a moderator (--moderator NAME)")
    spec = find_member(config, moderator) if moderator else None
    if (
        spec is not None
        and spec.kind is ParticipantKind.HUMAN
        and rules.speaker_policy is SpeakerPolicy.MODERATOR
    ):
        raise InvalidArgument(
            f"moderator {spec.name} is a human, but the moderator speaker policy needs an "
            "agent moderator (humans are never picked to speak)"
        )


def _check_transitions(config: PanelConfig, rules: PanelRules) -> None:
    graph = rules.speaker_policy is SpeakerPolicy.GRAPH
    if graph and not config.transitions:
        raise InvalidArgument("the graph speaker policy needs transitions (who may follow whom)")
    if config.transitions and not graph:
        raise InvalidArgument(
            f"transitions are used only by the graph speaker policy (this panel's is "
            f"{rules.speaker_policy})"
        )
    for source, targets in config.transitions.items():
        for name in (source, *targets):
            if find_member(config, name) is None:
                raise InvalidArgument(f"transition {source} -> {name}: {name!r} is not a member")
