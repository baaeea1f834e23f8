"""What the demo agent says in a panel, by persona and stance: the phrases
:mod:`agentplex.plugins.demo_panel` chooses from. Stdlib only, like the agent."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    """What one kind of persona talks about. ``{topic}`` and ``{who}`` are filled in; an
    action is (task, whose voice owns it)."""

    key: str
    openers: tuple[str, ...]
    points: tuple[str, ...]
    questions: tuple[str, ...]
    insights: tuple[str, ...]
    actions: tuple[tuple[str, str], ...]
    decisions: tuple[str, ...]
    conditions: str


PM = Voice(
    key="pm",
    openers=('On "{topic}", let me frame the scope.', 'Here is how I would plan "{topic}".'),
    points=(
        "The scope should be the smallest slice that proves it works; the rest waits.",
        "I would split it into three steps: agree the interface, build the core path, harden.",
        "Acceptance for me: a user does the main task end to end and we can show it.",
        "We should name what is out of scope now, or it creeps back every meeting.",
        "The plan needs one owner per step and a date we can check against.",
    ),
    questions=(
        "@{who}, what would make you call this done?",
        "@{who}, which step would you cut if we had half the time?",
    ),
    insights=(
        "The real risk here is scope, not technology.",
        "Agreeing the acceptance criteria first saves a round of rework.",
    ),
    actions=(
        ("write the acceptance criteria for the first slice", "pm"),
        ("draft the plan with one owner per step", "pm"),
        ("list the test cases behind each acceptance criterion", "qa"),
    ),
    decisions=(
        "Ship the smallest slice first, with written acceptance criteria.",
        "Go ahead in three steps, each with an owner and a check.",
    ),
    conditions="the scope stays small and acceptance is written down first",
)
QA = Voice(
    key="qa",
    openers=('On "{topic}", let me look at what can break.', 'My job on "{topic}" is the risks.'),
    points=(
        "The edge cases worry me most: empty input, huge input, two requests at once.",
        "Before we build, I want a failing test for each risk we name today.",
        "Concurrency is where this kind of change breaks; we need a test that runs it in parallel.",
        "Bad input must get a clear error, never a crash, and I will test that first.",
        "A regression suite on the main path would catch most of what I fear here.",
    ),
    questions=(
        "@{who}, how do we roll back if it fails in production?",
        "@{who}, what should happen with empty input?",
    ),
    insights=(
        "Most of the risk sits at the boundaries, not in the main path.",
        "Every risk we can name today can become a test today.",
    ),
    actions=(
        ("write failing tests for the edge cases we named", "qa"),
        ("add a test that runs it concurrently", "qa"),
        ("make every bad input fail with a clear error", "specialist"),
    ),
    decisions=(
        "Nothing ships without tests for the edge cases we listed.",
        "Go ahead once a regression suite covers the main path.",
    ),
    conditions="the edge cases we named are covered by tests first",
)
SPECIALIST = Voice(
    key="specialist",
    openers=('On "{topic}", here is how I would build it.', 'Implementing "{topic}" is my part.'),
    points=(
        "I would build it as one small module with a clear interface, testable alone.",
        "It fits the existing structure; I would not add a dependency for it.",
        "Keep the data format stable and versioned, so old records still load.",
        "I can make the core path work behind a flag first, then drop the flag once tested.",
        "It should be fast enough, but I would measure with a benchmark before promising.",
    ),
    questions=(
        "@{who}, can you live with shipping it behind a flag first?",
        "@{who}, which interface would you rather call?",
    ),
    insights=(
        "The simplest implementation is also the easiest to test.",
        "Most of the work is the interface; the code behind it is small.",
    ),
    actions=(
        ("prototype the core path behind a flag", "specialist"),
        ("write a benchmark for the hot path", "specialist"),
        ("review the interface before it is built", "pm"),
    ),
    decisions=(
        "Build it as one small module behind a flag, and drop the flag once tested.",
        "Implement the core path first and measure before going further.",
    ),
    conditions="we build it behind a flag and measure it first",
)
GENERIC = Voice(
    key="generic",
    openers=('Speaking as {me}, on "{topic}":', 'My view, as {me}, on "{topic}":'),
    points=(
        "The main question is whether it is worth what it costs.",
        "I would want evidence before we commit to it.",
        "There is a simpler version of this that we should try first.",
        "The people who will use it should shape it, not only the ones who build it.",
    ),
    questions=(
        "@{who}, what would change your mind?",
        "@{who}, what is the strongest argument against your view?",
    ),
    insights=(
        "We agree more than it seems: the difference is order, not direction.",
        "The disagreement is about cost, not about the goal.",
    ),
    actions=(("summarise the open questions", "me"),),
    decisions=("Proceed in small steps and review after the first one.",),
    conditions="we review it after the first step",
)
REVIEW = (
    "the clearest case, and one we could act on.",
    "sound points, though it skips some risks.",
    "too vague to act on as it stands.",
)
"""What a reviewer says of its best, middle and worst ranked responses."""
_VOICE_WORDS = (
    (PM, ("pm", "product", "manager", "planner")),
    (QA, ("qa", "quality", "tester", "test")),
    (SPECIALIST, ("specialist", "implement", "implementer", "developer", "engineer")),
)
STANCE_LINES = {
    "for": (
        "I am for it: the benefit is clear and the risks can be managed.",
        "I support this, and I think we should move now.",
    ),
    "against": (
        "I am against it as proposed: the cost is higher than the benefit.",
        "I do not support this yet; the risks are not answered.",
    ),
    "neutral": (
        "I am neutral for now: there are good points on both sides.",
        "I have not made up my mind; I want to weigh both sides.",
    ),
}
ANSWERS: dict[str | None, tuple[str, ...]] = {
    "for": ("I agree, and it strengthens the case.", "yes, and we can build on that."),
    "against": (
        "I am not convinced; that is the cost I worry about.",
        "that does not answer my concern.",
    ),
    "neutral": ("fair, though it cuts both ways.", "maybe; what would it cost us?"),
    None: ("that is a useful point.", "I can work with that."),
}


def voice_for(name: str, persona: str | None, instructions: str | None) -> Voice:
    """The persona's voice: by its name, else the member's name, else its instructions."""
    for text in (persona or "", name, instructions or ""):
        words = set(re.findall(r"[a-z]+", text.lower()))
        for voice, keys in _VOICE_WORDS:
            if words & set(keys):
                return voice
    return GENERIC
