"""The round plan (supervisor/panels/rounds.py), pure: what a member that cannot resume is
told, when a round is over, which manual picks are refused."""

from __future__ import annotations

import msgspec
import pytest

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    ParticipantKind,
    SpeakerPolicy,
)
from agentplex.supervisor.panels import prompts
from agentplex.supervisor.panels.rounds import Rounds

MEMBERS = [MemberSpec(name=n) for n in ("PM", "QA", "Spec")]


def message(who: str, text: str, rnd: int = 0, **fields: object) -> PanelMessage:
    return PanelMessage(
        id=f"m-{who}-{rnd}-{text[:4]}", panel_id="p", participant=who, text=text, ts=0.0,
        turn=1, round=rnd, **fields,  # type: ignore[arg-type]
    )


def test_a_member_that_cannot_resume_is_resent_its_brief_and_the_pruned_history() -> None:
    config = PanelConfig(topic="Ship?", members=MEMBERS, history_budget_chars=50)
    log = [message("PM", "x" * 30), message("QA", "Too risky."), message("Spec", "Maybe.")]
    plan = Rounds(config, "p")
    told = plan.sequential_prompt(MEMBERS[0], log, resumable=False)
    assert told == prompts.without_resume(config, MEMBERS[0], log)
    assert told.startswith(prompts.first_prompt(config, MEMBERS[0]))
    assert "earlier message left out" in told and "QA (expert): Too risky." in told
    resumed = plan.sequential_prompt(MEMBERS[0], log, resumable=True)
    assert resumed.startswith("Since your last turn:") and "Panel topic" not in resumed


def test_a_round_counts_the_failed_turn_of_a_member_that_left_in_it() -> None:
    plan = Rounds(PanelConfig(topic="t", members=MEMBERS), "p")
    failed = message("QA", "(QA gave no reply)", type=MessageType.SYSTEM)
    log = [message("PM", "a"), failed]
    assert not plan.round_over(log, 0, frozenset({"QA"}))
    assert plan.round_over([*log, message("Spec", "b")], 0, frozenset({"QA"}))
    cut = message("Spec", "(interrupted)", interrupted=True)
    assert not plan.round_over([*log, cut], 0, frozenset({"QA"}))


def test_a_round_counts_the_reply_of_a_member_that_left_after_it() -> None:
    # QA answered, then its process failed on its way out: it left, and its reply counts,
    # so Spec still has its turn in the round however soon QA's leaving is known.
    plan = Rounds(PanelConfig(topic="t", members=MEMBERS), "p")
    log = [message("PM", "a"), message("QA", "b")]
    assert not plan.round_over(log, 0, frozenset({"QA"}))
    assert plan.round_over([*log, message("Spec", "c")], 0, frozenset({"QA"}))
    assert plan.round_over([message("PM", "a"), message("Spec", "c")], 0, frozenset({"QA"}))


def test_a_manual_pick_must_name_an_active_agent_of_a_manual_panel() -> None:
    human = MemberSpec(name="Ana", kind=ParticipantKind.HUMAN)
    config = PanelConfig(
        topic="t", members=[*MEMBERS, human], speaker_policy=SpeakerPolicy.MANUAL
    )
    plan = Rounds(config, "p")
    assert plan.check_pick("qa", frozenset()) == "QA"
    for name, says in (("Ana", "not an agent"), ("Ghost", "not an agent"), ("PM", "has left")):
        with pytest.raises(InvalidArgument, match=says):
            plan.check_pick(name, frozenset({"PM"}))
    with pytest.raises(InvalidArgument, match="manual"):
        Rounds(PanelConfig(topic="t", members=MEMBERS), "p").check_pick("QA", frozenset())


def test_what_a_human_posts_while_a_member_speaks_reaches_that_member_next_turn() -> None:
    plan = Rounds(PanelConfig(topic="t", members=MEMBERS), "p")
    before = _at(message("Spec", "said before PM's turn"), ts=1.0)
    during = _at(message("Ana", "posted while PM wrote"), ts=7.0)
    reply = _at(message("PM", "PM's reply"), ts=10.0, latency_ms=5000)  # handed over at 5.0
    after = _at(message("QA", "after PM"), ts=11.0)
    told = plan.sequential_prompt(MEMBERS[0], [before, during, reply, after], resumable=True)
    assert "posted while PM wrote" in told and "after PM" in told
    assert "said before PM's turn" not in told and "PM's reply" not in told


def _at(m: PanelMessage, **fields: object) -> PanelMessage:
    return msgspec.structs.replace(m, **fields)
