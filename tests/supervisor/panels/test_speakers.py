"""Speaker selection: each policy picks as documented, falls back to round robin with a
recorded reason when it cannot, and never picks a human, an inactive member, or one over its
consecutive limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.protocol.panels import (
    MemberSpec,
    PanelConfig,
    PanelType,
    ParticipantKind,
    ParticipantRole,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels.rules import PanelRules, rules_for
from agentplex.supervisor.panels.speakers import Choice, SpeakerState, next_speaker

HUMAN = ParticipantKind.HUMAN


def config(*members: MemberSpec, **kw: object) -> PanelConfig:
    members = members or tuple(MemberSpec(name=n) for n in ("PM", "QA", "Dev"))
    return PanelConfig(topic="t", members=list(members), **kw)  # type: ignore[arg-type]


def pick(cfg: PanelConfig, **state: object) -> Choice | None:
    return next_speaker(rules_for(cfg), cfg, SpeakerState(**state))  # type: ignore[arg-type]


def run(cfg: PanelConfig, turns: int, texts: dict[str, str] | None = None) -> list[str]:
    """Who speaks over ``turns`` turns when each member always says ``texts[name]``."""
    spoken: list[str] = []
    last_text = ""
    for _ in range(turns):
        choice = pick(cfg, spoken=tuple(spoken), last_text=last_text)
        assert choice is not None
        spoken.append(choice.name)
        last_text = (texts or {}).get(choice.name, "")
    return spoken


def test_round_robin_cycles_in_member_order() -> None:
    assert run(config(), 7) == ["PM", "QA", "Dev", "PM", "QA", "Dev", "PM"]


def test_round_robin_skips_humans_and_inactive_members() -> None:
    cfg = config(
        MemberSpec(name="PM"),
        MemberSpec(name="Eve", kind=HUMAN),
        MemberSpec(name="QA"),
        MemberSpec(name="Dev"),
    )
    choice = pick(cfg, spoken=("PM", "Eve"), inactive=frozenset({"qa"}))
    assert choice == Choice("Dev", "round robin")
    assert pick(cfg, spoken=("Dev",), inactive=frozenset({"PM", "QA", "Dev"})) is None


def test_a_lone_member_stops_at_its_consecutive_limit() -> None:
    cfg = config(MemberSpec(name="PM"), MemberSpec(name="QA"), max_consecutive=2)
    gone = frozenset({"QA"})
    assert pick(cfg, spoken=("PM",), inactive=gone) == Choice("PM", "round robin")
    assert pick(cfg, spoken=("QA", "PM", "PM"), inactive=gone) is None


def test_strict_alternation_by_stance() -> None:
    cfg = config(
        MemberSpec(name="A1", stance=Stance.FOR),
        MemberSpec(name="A2", stance=Stance.FOR),
        MemberSpec(name="B1", stance=Stance.AGAINST),
        MemberSpec(name="N", stance=Stance.NEUTRAL),  # joins the smaller side: against
        type=PanelType.DEBATE,
    )
    assert run(cfg, 6) == ["A1", "B1", "A2", "N", "A1", "B1"]


def test_strict_alternation_by_order_without_stances() -> None:
    cfg = config(*(MemberSpec(name=n) for n in "ABCD"), type=PanelType.DEBATE)
    assert run(cfg, 5) == ["A", "B", "C", "D", "A"]


def test_strict_alternation_with_one_side_gone_falls_back_with_a_reason() -> None:
    cfg = config(
        MemberSpec(name="A", stance=Stance.FOR),
        MemberSpec(name="B", stance=Stance.AGAINST),
        MemberSpec(name="C", stance=Stance.FOR),
        type=PanelType.DEBATE,
    )
    choice = pick(cfg, spoken=("A",), inactive=frozenset({"B"}))
    assert choice is not None and choice.fallback and choice.name == "C"
    assert "one side of the debate has no active member" in choice.reason


def moderated(**kw: object) -> PanelConfig:
    return config(
        MemberSpec(name="Mod", role=ParticipantRole.MODERATOR),
        MemberSpec(name="QA"),
        MemberSpec(name="Dev"),
        MemberSpec(name="Eve", kind=HUMAN),
        type=PanelType.EXPERT_CONSULTATION,
        **kw,
    )


def test_the_moderator_speaks_first_and_after_every_other_member() -> None:
    cfg = moderated()
    assert pick(cfg) == Choice("Mod", "the moderator picks who speaks")
    assert pick(cfg, spoken=("Mod", "Dev")) == Choice("Mod", "the moderator picks who speaks")
    assert pick(cfg, spoken=("Mod", "Eve")) == Choice("Mod", "the moderator picks who speaks")


def test_the_moderator_names_the_next_speaker() -> None:
    cfg = moderated()
    reply = "Good point.\nNEXT: qa\n"
    assert pick(cfg, spoken=("Mod",), moderator_reply=reply) == Choice(
        "QA", "named by the moderator"
    )
    # The last NEXT line wins; **bold** and "Next speaker" are read too.
    reply = "NEXT: QA\n**Next speaker:** @Dev"
    assert pick(cfg, spoken=("Mod",), last_text=reply) == Choice("Dev", "named by the moderator")
    assert pick(cfg, spoken=("Mod",), last_text="@dev, your view?") == Choice(
        "Dev", "named by the moderator"
    )


def test_a_bad_moderator_choice_falls_back_to_round_robin_with_the_reason() -> None:
    cfg = moderated()
    cases = {
        "NEXT: Ghost": "the moderator named 'Ghost', who is not a member",
        "NEXT: Eve": "the moderator named Eve, a human",
        "NEXT: Mod": "the moderator named itself",
        "Let us think.": "the moderator named no one",
    }
    for reply, reason in cases.items():
        choice = pick(cfg, spoken=("Mod", "QA", "Mod"), last_text=reply)
        assert choice is not None and choice.fallback, reply
        assert choice.name == "Dev"  # round robin among the others, after QA
        assert reason in choice.reason
    choice = pick(cfg, spoken=("Mod",), last_text="NEXT: QA", inactive=frozenset({"QA"}))
    assert choice is not None and "no longer active" in choice.reason and choice.name == "Dev"


def test_without_an_active_moderator_the_others_go_round_robin() -> None:
    choice = pick(moderated(), spoken=("QA",), inactive=frozenset({"Mod"}))
    assert choice == Choice("Dev", "round robin: the moderator is not active", fallback=True)


def test_a_mention_makes_that_member_next() -> None:
    cfg = config(speaker_policy=SpeakerPolicy.MENTION)
    choice = pick(cfg, spoken=("PM",), last_text="What does @qa think? cc @Dev")
    assert choice == Choice("QA", "mentioned by PM")
    assert run(cfg, 4, {"PM": "@Dev?", "Dev": "@PM: yes"}) == ["PM", "Dev", "PM", "Dev"]


def test_mentions_of_oneself_humans_or_non_members_fall_to_round_robin() -> None:
    cfg = config(
        MemberSpec(name="PM"),
        MemberSpec(name="QA"),
        MemberSpec(name="Eve", kind=HUMAN),
        speaker_policy=SpeakerPolicy.MENTION,
    )
    for text in ("as @PM I say", "@Eve?", "@Nobody", "mail qa@example.com"):
        choice = pick(cfg, spoken=("PM",), last_text=text)
        assert choice is not None and choice.name == "QA", text
        assert choice.reason == "round robin: no active agent was mentioned"


def test_the_graph_allows_only_its_transitions() -> None:
    cfg = config(
        speaker_policy=SpeakerPolicy.GRAPH,
        transitions={"PM": ["QA", "Dev"], "QA": ["PM"], "Dev": ["PM"]},
    )
    assert run(cfg, 7) == ["PM", "QA", "PM", "Dev", "PM", "QA", "PM"]
    choice = pick(cfg, spoken=("PM", "QA", "PM"), last_text="@QA again")
    assert choice == Choice("QA", "graph: PM -> QA, mentioned")


def test_a_graph_dead_end_falls_back_with_a_reason() -> None:
    cfg = config(speaker_policy=SpeakerPolicy.GRAPH, transitions={"PM": ["QA"]})
    choice = pick(cfg, spoken=("PM", "QA"))
    assert choice is not None and choice.fallback and choice.name == "Dev"
    assert "the graph allows no active member after QA" in choice.reason


def test_manual_waits_for_a_pick_and_takes_only_an_active_agent() -> None:
    cfg = config(
        MemberSpec(name="PM"),
        MemberSpec(name="QA"),
        MemberSpec(name="Eve", kind=HUMAN),
        speaker_policy=SpeakerPolicy.MANUAL,
    )
    assert pick(cfg, spoken=("PM",)) is None
    assert pick(cfg, spoken=("PM",), manual_pick="qa") == Choice("QA", "picked by hand")
    assert pick(cfg, manual_pick="Eve") is None
    assert pick(cfg, manual_pick="Ghost") is None


def test_a_focus_group_facilitator_opens_every_cycle() -> None:
    cfg = config(
        MemberSpec(name="A"),
        MemberSpec(name="Fac", role=ParticipantRole.FACILITATOR),
        MemberSpec(name="B"),
        moderator="Fac",
        type=PanelType.FOCUS_GROUP,
    )
    assert run(cfg, 7) == ["Fac", "A", "B", "Fac", "A", "B", "Fac"]


POLICIES = st.sampled_from(list(SpeakerPolicy))


@st.composite
def situations(draw: st.DrawFn) -> tuple[PanelRules, PanelConfig, SpeakerState]:
    names = draw(st.lists(st.sampled_from(["A", "B", "C", "D", "E"]), min_size=2, unique=True))
    kinds = [draw(st.sampled_from(list(ParticipantKind))) for _ in names]
    stances = [draw(st.sampled_from([None, *Stance])) for _ in names]
    members = [
        MemberSpec(name=n, kind=k, stance=s) for n, k, s in zip(names, kinds, stances, strict=True)
    ]
    cfg = PanelConfig(
        topic="t",
        members=members,
        moderator=draw(st.sampled_from([None, *names])),
        speaker_policy=draw(POLICIES),
        transitions={n: draw(st.lists(st.sampled_from(names))) for n in names},
        max_consecutive=draw(st.integers(1, 3)),
    )
    spoken = draw(st.lists(st.sampled_from(names), max_size=12))
    state = SpeakerState(
        spoken=spoken,
        inactive=frozenset(draw(st.lists(st.sampled_from(names)))),
        last_text=" ".join(f"@{n}" for n in draw(st.lists(st.sampled_from([*names, "X"])))),
        moderator_reply=draw(st.sampled_from([None, *(f"NEXT: {n}" for n in [*names, "X"])])),
        manual_pick=draw(st.sampled_from([None, "X", *names])),
    )
    return rules_for(cfg), cfg, state


@settings(max_examples=400, deadline=None)
@given(situations())
def test_never_a_human_an_inactive_member_or_one_over_its_limit(
    situation: tuple[PanelRules, PanelConfig, SpeakerState],
) -> None:
    rules, cfg, state = situation
    choice = next_speaker(rules, cfg, state)
    if choice is None:
        return
    spec = next(m for m in cfg.members if m.name == choice.name)
    assert spec.kind is ParticipantKind.AGENT
    assert state.is_active(choice.name)
    repeats = state.last_speaker == choice.name
    assert not (repeats and state.consecutive >= rules.max_consecutive)
    assert choice.reason
