"""What each member is told, turn by turn.

The lines below are stable: the demo agent (and any tool) may read them, one per line, each
beginning exactly so.

First turn (``first_prompt``)::

    Panel topic: <topic>
    Panel type: <type>                                      e.g. debate
    You are: <name>, <role>                                 e.g. QA, critic
    Your stance: <for|against|neutral>                      only with a stance
    Other members: <Name> (<role>), <Name> (<role>)
    Markers: begin a line with DECISION:, ACTION ITEM:, INSIGHT: or POSITION: to record one.
    Mentions: write @Name to address a member (e.g. @PM).
    Moderation: end your reply with a line NEXT: <Name> naming who speaks next (one of: …)
                                                            the moderator, when it picks
    …a line of guidance for the type, the stance and the length of a reply.

A member's persona instructions are NOT repeated: they reach the agent through its session's
persona.

Messages shown to a member (catch-up, simultaneous rounds, pruned history) are each one line
``<Name> (<role>): <text>``; a message's further lines follow indented by two spaces, so a line
that does not begin with a blank always begins a message. Catch-up prompts begin
``Since your last turn:``; simultaneous rounds ``Round <r>. The other members' answers to round
<r-1>:``; review prompts show ``Response A:`` … blocks and ask for ``RANKING: B > A > C``.
System messages and interrupted replies are never shown.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from agentplex.protocol.panels import (
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelMessage,
    PanelType,
    SpeakerPolicy,
    Stance,
)
from agentplex.supervisor.panels.rules import find_member, moderator_of, rules_for

_STANCE_GUIDANCE = {
    Stance.FOR: "Argue in favour of the topic's proposal and keep to that side.",
    Stance.AGAINST: "Argue against the topic's proposal and keep to that side.",
    Stance.NEUTRAL: "Weigh both sides without taking one; say what would settle the question.",
}
_TYPE_GUIDANCE = {
    PanelType.MULTI_PERSONA: "Discuss the topic from your own point of view.",
    PanelType.DEBATE: "Debate: make your case and answer the other side's points directly.",
    PanelType.BRAINSTORM: "Brainstorm: offer new ideas and build on the ideas before yours.",
    PanelType.FOCUS_GROUP: "Focus group: give your own honest reactions to the topic.",
    PanelType.EXPERT_CONSULTATION: "Consultation: give advice from your expertise.",
    PanelType.DECISION_MAKING: "Decision making: work towards a decision the panel can agree on.",
}
_RANKING = re.compile(r"RANKING\s*:\s*(.+)", re.IGNORECASE)


def role_of(config: PanelConfig, name: str) -> str:
    """A participant's role as shown to others (``guest`` for one not in the config)."""
    spec = find_member(config, name)
    return str(spec.role) if spec else "guest"


def speaker_line(config: PanelConfig, message: PanelMessage) -> str:
    """``Name (role): text``, further lines indented by two spaces."""
    first, *rest = message.text.strip().splitlines() or [""]
    lines = [f"{message.participant} ({role_of(config, message.participant)}): {first}"]
    lines.extend(f"  {line}" for line in rest)
    return "\n".join(lines)


def _shown(messages: Sequence[PanelMessage]) -> list[PanelMessage]:
    return [m for m in messages if m.type is not MessageType.SYSTEM and not m.interrupted]


def first_prompt(config: PanelConfig, member: MemberSpec) -> str:
    """The member's first turn: the topic, its place in the panel, the others and the markers."""
    others = [m for m in config.members if m.name != member.name]
    lines = [
        f"Panel topic: {config.topic.strip()}",
        f"Panel type: {config.type}",
        f"You are: {member.name}, {member.role}",
    ]
    if member.stance is not None:
        lines.append(f"Your stance: {member.stance}")
    lines.append("Other members: " + ", ".join(f"{m.name} ({m.role})" for m in others))
    if config.markers:
        markers = " or ".join([", ".join(config.markers[:-1]), config.markers[-1]][-2:])
        lines.append(f"Markers: begin a line with {markers.removeprefix(' or ')} to record one.")
    example = others[0].name if others else member.name
    lines.append(f"Mentions: write @Name to address a member (e.g. @{example}).")
    lines.extend(_moderation(config, member))
    lines.append(_TYPE_GUIDANCE[config.type])
    if member.stance is not None:
        lines.append(_STANCE_GUIDANCE[member.stance])
    lines.append(
        f"Reply with your own contribution only, in at most {config.max_message_chars} characters."
    )
    return "\n".join(lines)


def _moderation(config: PanelConfig, member: MemberSpec) -> list[str]:
    """The moderator's extra line when it picks the next speaker."""
    if rules_for(config).speaker_policy is not SpeakerPolicy.MODERATOR:
        return []
    if moderator_of(config) != member.name:
        return []
    names = ", ".join(m.name for m in config.members if m.name != member.name)
    return [
        "Moderation: end your reply with a line NEXT: <Name> naming who speaks next "
        f"(one of: {names})"
    ]


def catch_up(config: PanelConfig, member: MemberSpec, unseen: Sequence[PanelMessage]) -> str:
    """A later sequential turn: what the member has not seen yet (never its own messages),
    each prefixed with its speaker's name and role."""
    shown = [m for m in _shown(unseen) if m.participant != member.name]
    if shown:
        body = "Since your last turn:\n" + "\n".join(speaker_line(config, m) for m in shown)
    else:
        body = "Since your last turn: no one else has spoken."
    return "\n".join([body, *_moderation(config, member), f"Your turn, {member.name}."])


def simultaneous(
    config: PanelConfig, member: MemberSpec, round: int, previous_round: Sequence[PanelMessage]
) -> str:
    """Round ``round`` of a simultaneous panel (Du et al. 2023). Round 0: the first prompt
    alone. Round r: exactly the other members' round r-1 answers, named; never the member's
    own, never any other round's text (the filter is applied here, whatever is passed)."""
    if round == 0:
        return first_prompt(config, member) + (
            "\nEveryone answers this round at the same time; you will see the others' answers "
            "in the next round."
        )
    answers = [
        m for m in _shown(previous_round) if m.round == round - 1 and m.participant != member.name
    ]
    # In the members' order, not the order the answers came in: the same prompt every time.
    order = {spec.name: i for i, spec in enumerate(config.members)}
    answers.sort(key=lambda m: order.get(m.participant, len(order)))
    lines = [f"Round {round}. The other members' answers to round {round - 1}:"]
    lines.extend(speaker_line(config, m) for m in answers)
    if not answers:
        lines.append("(no other member answered)")
    lines.append(
        "Considering their answers, give your updated answer. Everyone answers this round at "
        "the same time."
    )
    return "\n".join(lines)


def labels(count: int) -> list[str]:
    """``A``, ``B``, … ``Z``, ``AA``, ``AB``, …"""
    out: list[str] = []
    for index in range(count):
        label = ""
        index += 1
        while index:
            index, rest = divmod(index - 1, 26)
            label = chr(ord("A") + rest) + label
        out.append(label)
    return out


def review(
    config: PanelConfig, member: MemberSpec, answers: Sequence[PanelMessage], rng: random.Random
) -> tuple[str, dict[str, str]]:
    """Ask the member to rank the others' answers, shown as "Response A/B/C" in an order
    drawn from ``rng``. Returns the prompt and the label -> member map (for the orchestrator
    to store, never to send). The member's own answer is not shown."""
    others = [m for m in _shown(answers) if m.participant != member.name]
    rng.shuffle(others)
    names = labels(len(others))
    lines = [
        f"Panel topic: {config.topic.strip()}",
        "Below are the other members' answers, anonymised. Rank them from best to worst.",
    ]
    for label, message in zip(names, others, strict=True):
        lines.append(f"Response {label}:")
        lines.extend(f"  {line}" for line in message.text.strip().splitlines())
    order = " > ".join(names) or "A"
    lines.append(
        f"Reply with one line RANKING: {order} (best first), then one line of reason "
        "for each response."
    )
    return "\n".join(lines), {label: m.participant for label, m in zip(names, others, strict=True)}


def parse_ranking(text: str, label_map: dict[str, str]) -> list[str] | None:
    """The members a review reply ranks, best first (labels it does not know are skipped,
    repeats counted once), or None without a ``RANKING:`` line."""
    found = _RANKING.findall(text)
    if not found:
        return None
    ranked: list[str] = []
    for label in re.findall(r"[A-Za-z]+", found[-1]):
        name = label_map.get(label.upper())
        if name is not None and name not in ranked:
            ranked.append(name)
    return ranked


def pruned_history(
    config: PanelConfig, messages: Sequence[PanelMessage], budget: int | None = None
) -> str:
    """The discussion so far within ``budget`` characters (default the config's
    ``history_budget_chars``): the newest whole messages that fit, oldest first, after a
    line saying how many earlier messages were left out."""
    limit = config.history_budget_chars if budget is None else budget
    shown = _shown(messages)
    kept: list[str] = []
    used = 0
    for message in reversed(shown):
        line = speaker_line(config, message)
        if used + len(line) + 1 > limit:
            break
        kept.append(line)
        used += len(line) + 1
    left_out = len(shown) - len(kept)
    plural = "s" if left_out > 1 else ""
    head = [f"({left_out} earlier message{plural} left out)"] if left_out else []
    return "\n".join([*head, *reversed(kept)])


def without_resume(config: PanelConfig, member: MemberSpec, history: Sequence[PanelMessage]) -> str:
    """A later turn for a member whose backend cannot resume its conversation: the first
    prompt again, then the discussion so far pruned to ``history_budget_chars``."""
    return "\n".join(
        [
            first_prompt(config, member),
            "The discussion so far:",
            pruned_history(config, history) or "(nothing yet)",
            f"Your turn, {member.name}.",
        ]
    )
