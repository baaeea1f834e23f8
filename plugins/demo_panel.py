"""The demo agent in a panel: it reads the lines a panel's prompts carry and answers in
character, so a panel of demo members is a discussion worth watching with no network.

It reads the stable lines of ``agentplex.supervisor.panels.prompts``: a first prompt's
``Panel topic:``, ``Panel type:``, ``You are: <name>, <role>``, ``Your stance:``, ``Other
members: A (critic), B (expert)`` and ``Moderation: … (one of: A, B)``; the messages later
prompts relay, each a ``Name (role): text`` line with its further lines indented; a position
request's ``POSITION: agree|…|disagree|…`` template (``consensus.position_request``); a
review's ``Response A:`` blocks and its ``RANKING:`` request. Only the first prompt has the
header, so the seat is read from every prompt of the conversation, earliest first.

The voice comes from the persona (its name, else the member's name, else words of its
instructions): a PM speaks of scope, plan and acceptance, QA of risks, tests and edge cases,
a Specialist of implementation, anyone else generically but by name. It answers a member it
heard (one who @mentioned it first), sometimes asks someone a question, marks an
``INSIGHT:`` at least every third turn and an ``ACTION ITEM: … (owner: Name)`` now and then,
a ``DECISION:`` when asked to conclude, and as moderator names who is ``NEXT:``. The stance
colours every turn and decides its positions. The words depend only on what the agent was
told, its own earlier replies and ``AGENTPLEX_DEMO_SEED``: the same conversation gets the
same replies, and nothing it was not told can appear in them (quotes of other members are
cut short and lose their ``@`` and markers, so a quote never mentions anyone or records a
decision).

Stdlib only, like the agent.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from agentplex.plugins.demo_voices import ANSWERS, REVIEW, STANCE_LINES, Voice, voice_for

SEED_VARIABLE = "AGENTPLEX_DEMO_SEED"
QUOTE_WORDS = 10
"""At most this many words of another member's message are quoted back."""
TOPIC_CHARS = 80
MARKERS = ("DECISION:", "ACTION ITEM:", "INSIGHT:", "POSITION:")

_FIELD = re.compile(
    r"^(Panel topic|Panel type|You are|Your stance|Other members|Markers|Mentions|Moderation)"
    r":\s*(.*)$"
)
"""A line of a first prompt (``Markers:`` and ``Mentions:`` only tell what the demo does
anyway; ``Moderation:`` is read from the prompt it is in)."""
ROLES = "moderator|expert|advocate|critic|observer|facilitator|guest"
"""The roles a ``Name (role): text`` line may name (the panel's, and a guest's)."""
_SAID = re.compile(rf"^(\S[^:()@]{{0,63}}?) \(({ROLES})\): (.*)$", re.I)
_STANCE = re.compile(r"\b(for|against|neutral)\b", re.I)
_NEXT_CHOICES = re.compile(r"^Moderation:.*\(one of: ([^)]*)\)", re.M)
_RESPONSE = re.compile(r"^Response ([A-Z]+):\s*$")
_RANKING_ASK = re.compile(r"\bRANKING:")
_MEMBER = re.compile(r"^\s*([^(),]+?)\s*\(([^()]+)\)\s*$")
_CONCLUDE = re.compile(
    r"\b(conclude|conclusion|wrap up|wrap-up|final round|last round|closing|DECISION:)", re.I
)
_WRAP_UP = re.compile(r"\b(conclude|wrap up|wrap-up)\b", re.I)
"""Heard by a moderator, it gives its verdict (``VERDICT: stop``)."""
_PROPOSAL = re.compile(r"\bproposal:[ \t]*\n?\s*(\S.*)$", re.I | re.M)
"""``Proposal: X``, or (as ``consensus.position_request`` puts it) a line ending in
``this proposal:`` and the proposal on the next lines."""


@dataclass(frozen=True)
class Member:
    name: str
    role: str


@dataclass(frozen=True)
class Seat:
    """Who the agent is in the panel, as its prompts told it."""

    topic: str
    kind: str
    me: Member
    stance: str | None
    others: tuple[Member, ...]
    voice: Voice


@dataclass(frozen=True)
class Said:
    """One ``Name (role): text`` line of a later prompt."""

    name: str
    role: str
    text: str


def seat(prompts: list[str], persona: str | None, instructions: str | None) -> Seat | None:
    """The panel seat the conversation's prompts describe, or None outside a panel. The
    first prompt to state a field wins."""
    fields: dict[str, str] = {}
    for prompt in prompts:
        for line in split_prompt(prompt)[1]:
            if match := _FIELD.match(line):
                fields.setdefault(match[1], match[2].strip())
    if "Panel topic" not in fields or "You are" not in fields:
        return None
    name, _, role = fields["You are"].partition(",")
    me = Member(name.strip(), role.strip() or "expert")
    stance = _STANCE.search(fields.get("Your stance", ""))
    others = _members(fields.get("Other members", ""))
    return Seat(
        topic=fields["Panel topic"],
        kind=fields.get("Panel type", ""),
        me=me,
        stance=stance[1].lower() if stance else None,
        others=tuple(m for m in others if m.name.lower() != me.name.lower()),
        voice=voice_for(me.name, persona, instructions),
    )


def _members(text: str) -> list[Member]:
    matches = (_MEMBER.match(part) for part in text.split(","))
    return [Member(m[1], m[2].strip()) for m in matches if m]


def split_prompt(prompt: str) -> tuple[list[Said], list[str]]:
    """The messages a prompt relays, and its other lines (what the orchestrator says),
    stripped. A message is a ``Name (role): text`` line and the indented lines after it."""
    said: list[Said] = []
    own: list[str] = []
    in_message = False
    for raw in prompt.splitlines():
        if in_message and raw[:1].isspace():
            last = said[-1]
            said[-1] = Said(last.name, last.role, f"{last.text}\n{raw.strip()}")
        elif match := _SAID.match(raw):
            said.append(Said(match[1].strip(), match[2].lower(), match[3].strip()))
            in_message = True
        else:
            own.append(raw.strip())
            in_message = False
    return said, own


def heard(prompt: str, me: Member) -> list[Said]:
    """What others said, as the prompt relays it (not my own words, nor the system's)."""
    said = split_prompt(prompt)[0]
    return [s for s in said if s.name.lower() not in (me.name.lower(), "system")]


def instructions_of(prompt: str) -> str:
    """What the orchestrator asks now: the prompt without the messages it relays and
    without the first prompt's fields."""
    return "\n".join(x for x in split_prompt(prompt)[1] if not _FIELD.match(x))


def rng_for(seat: Seat, prompt: str, turn: int, seed: str) -> random.Random:
    key = "\x00".join((seed, seat.me.name, seat.topic, str(turn), prompt))
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def reply(seat: Seat, prompt: str, turn: int, seed: str = "", earlier: str = "") -> str:
    """The member's reply to this turn's prompt, in character; ``earlier`` is what it said
    in its earlier turns, which it tries not to repeat."""
    rng = rng_for(seat, prompt, turn, seed)
    asked = instructions_of(prompt)
    if _RANKING_ASK.search(asked):
        return ranking(seat, prompt, rng)
    if "POSITION:" in asked and "disagree" in asked.lower():
        return position(seat, asked, rng)
    lines = discuss(seat, heard(prompt, seat.me), Picker(rng, earlier), turn)
    if _CONCLUDE.search(asked):
        decision = rng.choice(_decisions(seat))
        lines.append(f"DECISION: {fill(decision, seat)}")
    if seat.me.role == "moderator" and any(_WRAP_UP.search(s.text) for s in heard(prompt, seat.me)):
        lines.append("VERDICT: stop")  # asked to wrap up: the moderator's adaptive break
    if choices := _NEXT_CHOICES.search("\n".join(split_prompt(prompt)[1])):
        lines.append(f"NEXT: {next_speaker(lines, choices[1], rng)}")
    return "\n".join(lines)


def next_speaker(lines: list[str], choices: str, rng: random.Random) -> str:
    """The moderator's pick: the member it just asked a question, else one of the choices."""
    names = [name.strip() for name in choices.split(",") if name.strip()]
    asked = [n for n in names for line in lines if line.lower().startswith(f"@{n.lower()},")]
    return asked[0] if asked else rng.choice(names)


def ranking(seat: Seat, prompt: str, rng: random.Random) -> str:
    """A review: the anonymised responses ranked (in a seeded order), one reason each."""
    labels = [m[1] for line in prompt.splitlines() if (m := _RESPONSE.match(line))]
    if not labels:
        return f"RANKING: A\nA: {REVIEW[0]}"
    order = rng.sample(labels, len(labels))
    tiers = [REVIEW[2 * i // max(1, len(order) - 1)] for i in range(len(order))]
    lines = [f"RANKING: {' > '.join(order)}"]
    lines += [f"{label}: {tier}" for label, tier in zip(order, tiers, strict=True)]
    return "\n".join(lines)


class Picker:
    """Seeded choices that prefer what the member has not said yet."""

    def __init__(self, rng: random.Random, earlier: str) -> None:
        self.rng = rng
        self.earlier = earlier

    def fresh(self, options: tuple[str, ...]) -> str:
        unsaid = tuple(option for option in options if option not in self.earlier)
        return self.rng.choice(unsaid or options)


def discuss(seat: Seat, said: list[Said], pick: Picker, turn: int) -> list[str]:
    """A conversation turn: an answer to someone, the persona's point, the stance, and now
    and then a question, an insight (every third turn at least) or an action item."""
    voice, rng = seat.voice, pick.rng
    lines: list[str] = []
    if said:
        lines.append(answer(seat, said, rng))
    else:
        lines.append(fill(rng.choice(voice.openers), seat))
    lines.append(pick.fresh(voice.points))
    if seat.stance in STANCE_LINES:
        lines.append(rng.choice(STANCE_LINES[seat.stance]))
    if seat.others and rng.random() < 0.4:
        lines.append(fill(rng.choice(voice.questions), seat, who=rng.choice(seat.others).name))
    if turn % 3 == 2 or (turn > 1 and rng.random() < 0.3):
        lines.append(f"INSIGHT: {pick.fresh(voice.insights)}")
    if turn % 3 == 0 or rng.random() < 0.25:
        task, owner = rng.choice(voice.actions)
        lines.append(f"ACTION ITEM: {fill(task, seat)} (owner: {owner_name(seat, owner)})")
    return lines


def answer(seat: Seat, said: list[Said], rng: random.Random) -> str:
    """Answer one member named in the catch-up: one who mentioned me if any, else any."""
    mine = f"@{seat.me.name.lower()}"
    asked_me = [s for s in said if mine in s.text.lower()]
    other = rng.choice(asked_me or said)
    reaction = rng.choice(ANSWERS.get(seat.stance, ANSWERS[None]))
    lead = rng.choice(('{name}, you said "{quote}"', 'On what {name} said, "{quote}"'))
    return f"{lead.format(name=other.name, quote=fragment(other.text))} — {reaction}"


def fragment(text: str) -> str:
    """A short, harmless quote: the first sentence of the first line that is the member's
    own point (not a marker, a question to someone or a quote of another), without markers,
    mentions or quote marks."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [x for x in lines if not x.startswith(("@", "NEXT:", *MARKERS)) and '"' not in x]
    text = (own or lines or [""])[0]
    for marker in MARKERS:
        text = text.replace(marker, "")
    text = re.sub(r"[@\"“”]", "", text).strip()
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:QUOTE_WORDS]) + ("…" if len(words) > QUOTE_WORDS else "")


def position(seat: Seat, asked: str, rng: random.Random) -> str:
    """One ``POSITION:`` line whose choice follows the stance (veto only when offered)."""
    veto = re.search(r"\bveto\b", asked, re.I) is not None
    stance = seat.stance
    if stance == "for":
        choice = rng.choice(("agree", "agree", "agree with conditions"))
    elif stance == "against":
        choice = "veto" if veto and rng.random() < 0.3 else "disagree"
    elif stance == "neutral":
        choice = rng.choice(("abstain", "abstain", "agree with conditions", "disagree"))
    else:
        choice = rng.choice(("agree", "agree with conditions", "agree with conditions"))
    return f"POSITION: {choice} — {reason(seat, choice, asked)}"


def reason(seat: Seat, choice: str, asked: str) -> str:
    match = _PROPOSAL.search(asked)
    about = f'"{_short(fragment(match[1]))}"' if match else "it"
    reasons = {
        "agree": f"I back {about}: it fits what we discussed and can be checked.",
        "agree with conditions": f"I accept {about} provided {seat.voice.conditions}.",
        "disagree": f"I oppose {about}: it costs more than it gives, as it stands.",
        "abstain": f"I cannot judge {about} yet without more evidence.",
        "veto": f"I block {about}: it would cause harm we cannot undo.",
    }
    return reasons[choice]


def owner_name(seat: Seat, owner: str) -> str:
    """The member whose voice owns a task (``me`` for myself), by name; me if none does."""
    if owner != "me":
        if seat.voice.key == owner:
            return seat.me.name
        for member in seat.others:
            if voice_for(member.name, None, None).key == owner:
                return member.name
    return seat.me.name


def _decisions(seat: Seat) -> tuple[str, ...]:
    if seat.stance == "against":
        return ("Do not go ahead until the risks raised here are answered.",)
    return seat.voice.decisions


def fill(template: str, seat: Seat, who: str = "") -> str:
    return template.format(topic=_short(seat.topic), me=seat.me.name, who=who)


def _short(text: str) -> str:
    """A topic or proposal as a reply names it: one line, no ``@``, at most TOPIC_CHARS."""
    text = " ".join(text.replace("@", "").split()).rstrip(".?!")
    return text if len(text) <= TOPIC_CHARS else text[: TOPIC_CHARS - 1].rstrip() + "…"
