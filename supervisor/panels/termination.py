"""When a panel stops: the ``--until`` grammar, and checking it against a panel's progress.

Grammar (one ``--until`` string; several strings are or-ed)::

    condition := term (("and" | "or") term)*      "and" binds tighter than "or"
    term      := rounds=N | messages=N | tokens=N | cost=USD | time=DURATION
               | marker=TEXT | verdict

- ``rounds=N``: N rounds completed (``StopReason.MAX_ROUNDS``).
- ``messages=N``: N member messages (system messages and reactions are not counted).
- ``tokens=N``: input plus output tokens of all members reach N (cached tokens are not counted).
- ``cost=USD``: the members' cost reaches USD (``cost=0.50``).
- ``time=DURATION``: wall-clock time since the panel started: ``90s``, ``10m``, ``1h``,
  ``1h30m``, ``1.5m`` (a unit is required).
- ``marker=TEXT``: a member's message carries TEXT. A marker ending in ``:`` (``DECISION:``)
  must begin a line (after blanks and Markdown's ``-``, ``*``, ``>`` or ``#``, so
  ``**DECISION:**`` counts); any other phrase may appear
  anywhere; both compared ignoring case. Quote a phrase holding " and " / " or ":
  ``marker="pros and cons settled"``.
- ``verdict``: the moderator's adaptive break, a line ``VERDICT: stop`` (or ``end``,
  ``conclude``, ``done``, ``close``) in a moderator's message; it needs a moderator.

Markers and verdicts latch: once seen they stay met, so ``marker=DECISION: and rounds=3`` stops
after round 3 even if the decision came in round 1 (feed a reloaded log through ``check`` once,
after a restart, to rebuild the latches). An ``and`` group stops with the reason of its last
term. Before any of these, ``check`` stops a panel ended by request (``ENDED_BY_REQUEST``) or
whose members all failed or exited (``MEMBERS_GONE``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import MessageType, PanelMessage, StopReason

MAX_UNTIL_TEXTS = 16
MAX_UNTIL_CHARS = 1_000
"""Bounds on the conditions one panel may carry (each string, and how many)."""
VERDICT_WORDS = ("stop", "end", "conclude", "done", "close")

_SPLIT = re.compile(r"(?:^|\s+)(and|or)(?:\s+|$)", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_VERDICT = re.compile(
    r"^[\s>*#-]*VERDICT\s*:\s*\**\s*(" + "|".join(VERDICT_WORDS) + r")\b",
    re.IGNORECASE | re.MULTILINE,
)
_GRAMMAR = "rounds=N, messages=N, tokens=N, cost=USD, time=DURATION, marker=TEXT or verdict"


@dataclass(frozen=True)
class Progress:
    """What the orchestrator knows when it checks whether to stop."""

    rounds: int = 0
    """Rounds completed."""
    messages: int = 0
    """Member messages so far (not system messages, not reactions)."""
    tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    last_messages: Sequence[PanelMessage] = ()
    """The messages since the previous check (markers and verdicts are read from these)."""
    moderator: str | None = None
    members_alive: int = 1
    """Agent members still able to take a turn."""
    ended_by_request: bool = False


@dataclass(frozen=True)
class Term:
    """One ``key=value`` condition."""

    key: str
    text: str
    """As written, for messages and ``describe``."""
    number: float = 0.0
    phrase: str = ""


@dataclass(frozen=True)
class Group:
    """Terms that must all be met (an ``and`` chain; a single term is a group of one)."""

    terms: tuple[Term, ...]


_REASONS = {
    "rounds": StopReason.MAX_ROUNDS,
    "messages": StopReason.MAX_MESSAGES,
    "tokens": StopReason.TOKEN_BUDGET,
    "cost": StopReason.COST_BUDGET,
    "time": StopReason.WALL_CLOCK,
    "marker": StopReason.MARKER,
    "verdict": StopReason.MODERATOR_VERDICT,
}


@dataclass
class Condition:
    """Or-ed groups of and-ed terms, with the latches of the marker and verdict terms met."""

    groups: tuple[Group, ...] = ()
    _latched: set[Term] = field(default_factory=set)

    @property
    def needs_moderator(self) -> bool:
        return any(t.key == "verdict" for g in self.groups for t in g.terms)

    def describe(self) -> str:
        return " or ".join(" and ".join(t.text for t in g.terms) for g in self.groups)

    def deadlines(self) -> list[float]:
        """The seconds after the start at which a ``time=`` term becomes met, soonest first:
        the moments to check again without waiting for a turn to end."""
        return sorted({t.number for g in self.groups for t in g.terms if t.key == "time"})

    def check(self, progress: Progress) -> StopReason | None:
        """The reason to stop now, or None to go on."""
        if progress.ended_by_request:
            return StopReason.ENDED_BY_REQUEST
        if progress.members_alive <= 0:
            return StopReason.MEMBERS_GONE
        self._latch(progress)
        for group in self.groups:
            if all(self._met(term, progress) for term in group.terms):
                return _REASONS[group.terms[-1].key]
        return None

    def _latch(self, progress: Progress) -> None:
        said = [
            m
            for m in progress.last_messages
            if m.type is not MessageType.SYSTEM and not m.interrupted
        ]
        for group in self.groups:
            for term in group.terms:
                if term not in self._latched and _event_met(term, said, progress.moderator):
                    self._latched.add(term)

    def _met(self, term: Term, progress: Progress) -> bool:
        match term.key:
            case "rounds":
                return progress.rounds >= term.number
            case "messages":
                return progress.messages >= term.number
            case "tokens":
                return progress.tokens >= term.number
            case "cost":
                return progress.cost_usd >= term.number
            case "time":
                return progress.elapsed_s >= term.number
            case _:
                return term in self._latched


def _event_met(term: Term, said: Sequence[PanelMessage], moderator: str | None) -> bool:
    if term.key == "marker":
        return any(marker_in(term.phrase, m.text) for m in said)
    if term.key == "verdict" and moderator is not None:
        folded = moderator.casefold()
        return any(m.participant.casefold() == folded and _VERDICT.search(m.text) for m in said)
    return False


def marker_in(marker: str, text: str) -> bool:
    """Whether ``text`` carries ``marker`` (the rule in the module docstring)."""
    if marker.endswith(":"):
        pattern = r"^[\s>*#-]*" + re.escape(marker)
        return re.search(pattern, text, re.IGNORECASE | re.MULTILINE) is not None
    return marker.casefold() in text.casefold()


def parse_until(texts: Iterable[str], *, max_rounds: int | None = None) -> Condition:
    """The condition of several ``--until`` strings (or-ed), plus ``rounds=max_rounds`` when
    given; raises ``InvalidArgument`` naming the bad part."""
    texts = list(texts)
    if len(texts) > MAX_UNTIL_TEXTS:
        raise InvalidArgument(f"at most {MAX_UNTIL_TEXTS} --until conditions (got {len(texts)})")
    groups: list[Group] = []
    for text in texts:
        groups.extend(_parse_one(text))
    if max_rounds is not None:
        groups.append(Group((Term("rounds", f"rounds={max_rounds}", number=max_rounds),)))
    return Condition(tuple(groups))


def _parse_one(text: str) -> list[Group]:
    if len(text) > MAX_UNTIL_CHARS:
        raise InvalidArgument(f"--until is over {MAX_UNTIL_CHARS} characters ({len(text)})")
    if not text.strip():
        raise InvalidArgument(f"--until {text!r} is empty: expected {_GRAMMAR}")
    groups: list[list[Term]] = [[]]
    for part, joiner in _split(text):
        if not part:
            raise InvalidArgument(f"--until {text!r}: 'and' and 'or' must join two conditions")
        groups[-1].append(_parse_term(text, part))
        if joiner == "or":
            groups.append([])
    return [Group(tuple(g)) for g in groups]


def _split(text: str) -> list[tuple[str, str | None]]:
    """The terms and the joiner after each, honouring double quotes."""
    quoted = re.split(r'("[^"]*")', text)
    if text.count('"') % 2:
        raise InvalidArgument(f"--until {text!r}: a quote is not closed")
    parts: list[tuple[str, str | None]] = []
    current = ""
    for i, chunk in enumerate(quoted):
        if i % 2:  # inside quotes: never split
            current += chunk
            continue
        pieces = _SPLIT.split(chunk)
        current += pieces[0]
        for joiner, piece in zip(pieces[1::2], pieces[2::2], strict=True):
            parts.append((current.strip(), joiner.lower()))
            current = piece
    parts.append((current.strip(), None))
    return parts


def _parse_term(text: str, part: str) -> Term:
    key, eq, value = part.partition("=")
    key = key.strip().lower()
    value = value.strip()
    bad = f"--until {text!r}: {part!r}"
    if key == "verdict" and not eq:
        return Term("verdict", "verdict")
    if not eq or key not in _REASONS or key == "verdict":
        raise InvalidArgument(f"{bad} is not a condition: expected {_GRAMMAR}")
    if key == "marker":
        phrase = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        if not phrase.strip():
            raise InvalidArgument(f"{bad}: the marker is empty")
        return Term("marker", part, phrase=phrase.strip())
    if key == "time":
        return Term("time", part, number=_duration(bad, value))
    if key == "cost":
        return Term("cost", part, number=_positive(bad, value, float))
    return Term(key, part, number=_positive(bad, value, int))


def _positive(bad: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise InvalidArgument(f"{bad}: {value!r} is not a {kind.__name__}") from None
    if not (math.isfinite(number) and number > 0):
        raise InvalidArgument(f"{bad}: must be above 0")
    return float(number)


def _duration(bad: str, value: str) -> float:
    """``90s``, ``10m``, ``1h``, ``1h30m``, ``1.5m``, ``500ms`` in seconds."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InvalidArgument(f"{bad}: {value!r} is not a duration such as 90s, 10m or 1h")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidArgument(f"{bad}: must be above 0")
    return seconds
