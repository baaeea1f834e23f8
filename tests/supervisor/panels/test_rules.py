"""Panel rules: each type's defaults, the config's overrides, and every bad config refused
with a clear error and a stable code before anything runs."""

from __future__ import annotations

import pytest

from agentplex.protocol.errors import (
    AgentplexError,
    InvalidArgument,
    InvalidName,
    UnknownBackend,
    UnknownPersona,
)
from agentplex.protocol.panels import (
    MemberSpec,
    PanelConfig,
    PanelType,
    ParticipantKind,
    ParticipantRole,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels.rules import (
    DEFAULT_MAX_ROUNDS,
    PanelRules,
    moderator_of,
    rules_for,
    validate,
)

PERSONAS = ["PM", "qa", "Specialist"]
BACKENDS = ["demo", "claude", "codex"]


def member(name: str, **kw: object) -> MemberSpec:
    return MemberSpec(name=name, persona=kw.pop("persona", None), **kw)  # type: ignore[arg-type]


def panel(*members: MemberSpec, **kw: object) -> PanelConfig:
    members = members or (member("PM"), member("QA"))
    return PanelConfig(topic="Ship v2 on Friday?", members=list(members), **kw)  # type: ignore[arg-type]


def test_each_type_has_its_default_rules() -> None:
    debate = PanelRules.for_type(PanelType.DEBATE)
    assert debate.speaker_policy is SpeakerPolicy.STRICT_ALTERNATION
    assert (debate.max_consecutive, debate.stances) == (2, True)
    brainstorm = PanelRules.for_type(PanelType.BRAINSTORM)
    assert brainstorm.speaker_policy is SpeakerPolicy.ROUND_ROBIN
    assert (brainstorm.max_consecutive, brainstorm.idea_building, brainstorm.stances) == (
        1,
        True,
        False,
    )
    deciding = PanelRules.for_type(PanelType.DECISION_MAKING)
    assert deciding.voting and deciding.consensus_check and deciding.stances
    consult = PanelRules.for_type(PanelType.EXPERT_CONSULTATION)
    assert consult.speaker_policy is SpeakerPolicy.MODERATOR and consult.require_moderator
    focus = PanelRules.for_type(PanelType.FOCUS_GROUP)
    assert focus.speaker_policy is SpeakerPolicy.ROUND_ROBIN and focus.facilitated
    multi = PanelRules.for_type(PanelType.MULTI_PERSONA)
    assert multi.speaker_policy is SpeakerPolicy.ROUND_ROBIN and multi.max_consecutive == 3
    for panel_type in PanelType:
        rules = PanelRules.for_type(panel_type)
        assert (rules.min_participants, rules.max_participants) == (2, 8)
        assert rules.max_rounds == DEFAULT_MAX_ROUNDS


def test_knobs_the_config_sets_override_the_type_defaults() -> None:
    config = panel(
        type=PanelType.DEBATE,
        speaker_policy=SpeakerPolicy.MENTION,
        max_consecutive=4,
        consensus_threshold=0.9,
        voting=True,
        anonymous_voting=True,
        require_moderator=False,
        max_participants=5,
        max_rounds=7,
    )
    rules = rules_for(config)
    assert rules.speaker_policy is SpeakerPolicy.MENTION
    assert (rules.max_consecutive, rules.consensus_threshold) == (4, 0.9)
    assert rules.voting and rules.anonymous_voting and not rules.require_moderator
    assert (rules.max_participants, rules.max_rounds) == (5, 7)
    assert rules.stances  # not overridable: the type's own


def test_unset_knobs_keep_the_defaults_and_until_alone_sets_no_round_cap() -> None:
    assert rules_for(panel(type=PanelType.BRAINSTORM)) == PanelRules.for_type(PanelType.BRAINSTORM)
    assert rules_for(panel(until=["messages=40"])).max_rounds is None
    assert rules_for(panel(until=["messages=40"], max_rounds=2)).max_rounds == 2


def test_a_good_config_passes() -> None:
    config = panel(
        member("PM", persona="pm", backend="claude", role=ParticipantRole.MODERATOR),
        member("QA", persona="QA", backend="codex", stance=Stance.AGAINST),
        member("Dev", backend="demo", model="m1", stance=Stance.FOR),
        member("alice", kind=ParticipantKind.HUMAN),
        type=PanelType.DEBATE,
        until=["rounds=2 or marker=DECISION:", "verdict"],
    )
    validate(config, PERSONAS, BACKENDS)
    assert moderator_of(config) == "PM"


BAD: list[tuple[str, PanelConfig, type[AgentplexError], str]] = [
    (
        "unknown persona",
        panel(member("PM", persona="pm"), member("Bob", persona="nobody")),
        UnknownPersona,
        "member Bob: no persona named 'nobody'",
    ),
    (
        "unknown backend",
        panel(member("PM", backend="demo"), member("QA", backend="cursor")),
        UnknownBackend,
        "member QA: no backend 'cursor'",
    ),
    ("one member", panel(member("PM")), InvalidArgument, "at least 2 members (got 1)"),
    (
        "more than the maximum",
        panel(*(member(f"M{i}") for i in range(9))),
        InvalidArgument,
        "at most 8 members (got 9)",
    ),
    (
        "more than the config's maximum",
        panel(member("A"), member("B"), member("C"), max_participants=2),
        InvalidArgument,
        "at most 2 members (got 3)",
    ),
    (
        "moderator not a member",
        panel(moderator="Boss"),
        InvalidArgument,
        "moderator 'Boss' is not a member (PM, QA)",
    ),
    (
        "stance on a type without stances",
        panel(member("PM"), member("QA", stance=Stance.FOR), type=PanelType.BRAINSTORM),
        InvalidArgument,
        "panel type brainstorm takes no stances (member QA has @for)",
    ),
    (
        "duplicate names ignoring case",
        panel(member("QA"), member("qa")),
        InvalidArgument,
        "two members are called 'QA' and 'qa'",
    ),
    (
        "graph transition to a non-member",
        panel(speaker_policy=SpeakerPolicy.GRAPH, transitions={"PM": ["QA", "Ghost"]}),
        InvalidArgument,
        "transition PM -> Ghost: 'Ghost' is not a member",
    ),
    (
        "graph without transitions",
        panel(speaker_policy=SpeakerPolicy.GRAPH),
        InvalidArgument,
        "graph speaker policy needs transitions",
    ),
    (
        "transitions without the graph policy",
        panel(transitions={"PM": ["QA"]}),
        InvalidArgument,
        "transitions are used only by the graph speaker policy",
    ),
    (
        "a required moderator missing",
        panel(type=PanelType.EXPERT_CONSULTATION),
        InvalidArgument,
        "panel type expert_consultation needs a moderator",
    ),
    (
        "two moderators by role",
        panel(
            member("A", role=ParticipantRole.MODERATOR),
            member("B", role=ParticipantRole.MODERATOR),
        ),
        InvalidArgument,
        "A, B all have the moderator role",
    ),
    (
        "a human moderator picking speakers",
        panel(
            member("PM"),
            member("Eve", kind=ParticipantKind.HUMAN),
            moderator="eve",
            speaker_policy=SpeakerPolicy.MODERATOR,
        ),
        InvalidArgument,
        "moderator Eve is a human",
    ),
    (
        "only humans",
        panel(member("A", kind=ParticipantKind.HUMAN), member("B", kind=ParticipantKind.HUMAN)),
        InvalidArgument,
        "at least one agent member",
    ),
    (
        "a human with a backend",
        panel(member("PM"), member("Eve", kind=ParticipantKind.HUMAN, backend="demo")),
        InvalidArgument,
        "human member Eve takes no persona, backend or model",
    ),
    ("a bad member name", panel(member("PM"), member("Q A")), InvalidName, "'Q A'"),
    ("the reserved name", panel(member("PM"), member("System")), InvalidName, "reserved"),
    (
        "an empty topic",
        PanelConfig(topic="  ", members=[member("A"), member("B")]),
        InvalidArgument,
        "topic",
    ),
    ("a malformed until", panel(until=["rounds=x"]), InvalidArgument, "'x' is not a int"),
    ("a verdict without moderator", panel(until=["verdict"]), InvalidArgument, "verdict needs"),
    ("zero rounds", panel(max_rounds=0), InvalidArgument, "max_rounds must be at least 1"),
    (
        "a threshold above 1",
        panel(consensus_threshold=1.5),
        InvalidArgument,
        "consensus threshold must be over 0.5 and at most 1",
    ),
    (
        "a minimum above the maximum",
        panel(min_participants=5, max_participants=3),
        InvalidArgument,
        "within 2 to 8 with min ≤ max",
    ),
    (
        "a vote with no voters",
        panel(member("A", votes=False), member("B", votes=False), type=PanelType.DECISION_MAKING),
        InvalidArgument,
        "at least one member must vote",
    ),
]


@pytest.mark.parametrize(("config", "error", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_config_is_refused_with_a_specific_error(
    config: PanelConfig, error: type[AgentplexError], says: str
) -> None:
    with pytest.raises(error) as caught:
        validate(config, PERSONAS, BACKENDS)
    assert type(caught.value) is error
    assert says in caught.value.message
    assert caught.value.code in {
        "unknown_persona",
        "unknown_backend",
        "invalid_argument",
        "invalid_name",
    }


def test_moderator_is_found_ignoring_case_and_by_role() -> None:
    assert moderator_of(panel(moderator="qa")) == "QA"
    assert moderator_of(panel(member("A"), member("B", role=ParticipantRole.MODERATOR))) == "B"
    assert moderator_of(panel()) is None
