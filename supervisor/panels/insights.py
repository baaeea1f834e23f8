"""What a panel catches in its members' replies: marked lines (``DECISION: …``,
``ACTION ITEM: …``), who an action item falls to, and ``@Name`` mentions.

Pure functions over text. The orchestrator calls :func:`capture` on every finished reply
and appends what it returns to ``insights/insights.jsonl``; the mention speaker policy calls
:func:`mentions`. Insight ids derive from the message id, so capturing a message again after
a crash yields the same records, never new ones.

What counts as a marked line (one insight per line, the first marker on it wins):

- a marker at the start of a line, in any case, after list bullets, numbering, heading
  hashes or emphasis (``- **Decision:** ship it``, ``1. action item: …``);
- or a marker anywhere in a line, written in the case it was configured in
  (``So, DECISION: ship it``) — a lower-case "decision:" inside a sentence is prose;
- never inside a fenced code block, nor in a ``>`` quote (a quote repeats what someone
  else said; their own message already yielded it), nor with nothing after the marker.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final, NamedTuple

from agentplex.protocol.panels import Insight, InsightKind, PanelMessage

DEFAULT_MARKERS: Final = ("DECISION:", "ACTION ITEM:", "INSIGHT:", "POSITION:")

_KIND_OF: Final[dict[str, InsightKind]] = {
    **dict.fromkeys(
        ("decision", "decided", "conclusion", "resolution", "resolved", "verdict"),
        InsightKind.DECISION,
    ),
    **dict.fromkeys(
        ("action item", "action", "todo", "to do", "task", "next step", "follow up"),
        InsightKind.ACTION_ITEM,
    ),
    **dict.fromkeys(("position", "vote", "stance"), InsightKind.POSITION),
}
"""Marker words → kind; any other marker (``FINDING:``, ``RISK:``) is an insight."""

_DECORATION: Final = r"(?:[\s#*_`+•-]|\d+[.)])*"
"""What may come before a marker at the start of a line: bullets, numbers, emphasis."""

_OWNER_WORDS: Final = r"(?:owners?|assignee|assigned\s+to|responsible)"
_APOSTROPHE: Final = "'\u2019"
_WILL_WORDS: Final = (
    rf"(?:[{_APOSTROPHE}]ll|\s+(?:will|shall|should|must|to|needs\s+to|is\s+going\s+to|can))\b"
)
_SELF: Final = re.compile(
    rf"(?<![\w@])i(?:\s*[{_APOSTROPHE}]ll|\s+(?:will|shall|am\s+going\s+to|can)\b)", re.I
)


class MarkedLine(NamedTuple):
    kind: InsightKind
    marker: str
    text: str
    """The line after the marker, trimmed of whitespace and emphasis."""


def marker_kind(marker: str) -> InsightKind:
    """The kind a marker yields: ``"ACTION ITEM:"`` and ``"TODO:"`` an action item, and so
    on; a marker this table does not know yields a plain insight."""
    words = re.sub(r"[\s_-]+", " ", marker.strip().rstrip(":").strip()).lower()
    return _KIND_OF.get(words, InsightKind.INSIGHT)


def marked_lines(text: str, markers: Sequence[str] = DEFAULT_MARKERS) -> list[MarkedLine]:
    """Every marked line of ``text``, in order (the rules are in the module docstring). A
    marker alone on its line (``**DECISION:**``) takes the next non-blank line as its text,
    as members writing Markdown often put it."""
    if not markers:
        return []
    finder = _marker_finder(tuple(markers))
    found: list[MarkedLine] = []
    pending: str | None = None
    fenced = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            fenced, pending = not fenced, None
            continue
        if fenced or stripped.startswith(">") or not stripped:
            continue
        marker, rest = finder.find(line)
        if marker is None and pending is not None:
            marker, rest = pending, _trim(re.sub(rf"^{_DECORATION}", "", line))
        pending = marker if marker is not None and not rest else None
        if marker is not None and rest:
            found.append(MarkedLine(kind=marker_kind(marker), marker=marker, text=rest))
    return found


def capture(
    message: PanelMessage,
    markers: Sequence[str],
    members: Sequence[str],
    *,
    now: float,
) -> list[Insight]:
    """The insights in one message: one per marked line, with ids ``<message id>-i<n>``
    (``n`` from 1, in line order). An action item names who it falls to when it can
    (:func:`responsible`). An interrupted reply yields nothing: its turn is asked again and
    the complete reply is captured then."""
    if message.interrupted:
        return []
    insights: list[Insight] = []
    for n, line in enumerate(marked_lines(message.text, markers), start=1):
        owner = None
        if line.kind is InsightKind.ACTION_ITEM:
            owner = responsible(line.text, members, speaker=message.participant)
        insights.append(
            Insight(
                id=f"{message.id}-i{n}",
                panel_id=message.panel_id,
                kind=line.kind,
                text=line.text,
                participant=message.participant,
                message_id=message.id,
                ts=now,
                responsible=owner,
            )
        )
    return insights


def mentions(text: str, members: Sequence[str]) -> list[str]:
    """The members ``text`` mentions as ``@Name`` (any case), as the members list spells
    them, in order of first mention, each once. ``@QA`` inside ``dev@qa.example`` or
    ``@QAteam`` is no mention of QA."""
    names = _names(tuple(members))
    if names is None:
        return []
    seen: list[str] = []
    for match in names.mention.finditer(text):
        name = names.named(match)
        if name not in seen:
            seen.append(name)
    return seen


def responsible(item: str, members: Sequence[str], *, speaker: str | None = None) -> str | None:
    """The member an action item falls to, as the members list spells it, or None.

    In order: an owner note (``(owner: QA)``, ``assigned to QA``), then the first
    ``@mention``, then a member who "will", "should" or "is to" act (``QA will …``), then
    the speaker when it says "I will" / "I'll" (if the speaker is a member)."""
    names = _names(tuple(members))
    if names is None:
        return None
    for pattern in (names.owner, names.mention, names.will):
        match = pattern.search(item)
        if match is not None:
            return names.named(match)
    if speaker is not None and _SELF.search(item):
        return next((n for n in names.members if n.casefold() == speaker.casefold()), None)
    return None


class _Names(NamedTuple):
    """The patterns that find one members list's names; each name is its own group
    (``n<index>``), so a match says which member it is however its case was written."""

    members: tuple[str, ...]
    mention: re.Pattern[str]
    owner: re.Pattern[str]
    will: re.Pattern[str]

    def named(self, match: re.Match[str]) -> str:
        assert match.lastgroup is not None, "every pattern ends in a name group"
        return self.members[int(match.lastgroup[1:])]


@functools.lru_cache(maxsize=256)
def _names(members: tuple[str, ...]) -> _Names | None:
    unique = {name.casefold(): name for name in reversed(members) if name.strip()}
    if not unique:
        return None
    # Longest first, so that of "Dev" and "DevOps" the whole name is taken.
    ordered = tuple(sorted(unique.values(), key=len, reverse=True))
    alternatives = "|".join(f"(?P<n{i}>{re.escape(n)})" for i, n in enumerate(ordered))
    name = rf"(?:{alternatives})(?![\w-])"
    return _Names(
        members=ordered,
        mention=re.compile(rf"(?<![\w@.])@{name}", re.I),
        owner=re.compile(rf"\b{_OWNER_WORDS}\s*[:=-]?\s*@?{name}", re.I),
        will=re.compile(rf"(?<![\w@]){name}{_WILL_WORDS}", re.I),
    )


class _MarkerFinder(NamedTuple):
    """One markers list compiled: a case-insensitive pattern for a marker opening a line,
    an exact-case one for a marker anywhere, and the marker each named group stands for."""

    at_start: re.Pattern[str]
    anywhere: re.Pattern[str]
    markers: dict[str, str]

    def find(self, line: str) -> tuple[str | None, str]:
        """The marker that marks ``line`` (None if none does) and the text after it."""
        match = self.at_start.match(line) or self.anywhere.search(line)
        if match is None or match.lastgroup is None:
            return None, ""
        return self.markers[match.lastgroup], _trim(line[match.end() :])


def _trim(text: str) -> str:
    return text.strip().strip("*_`").strip()


@functools.lru_cache(maxsize=64)
def _marker_finder(markers: tuple[str, ...]) -> _MarkerFinder:
    # Longest first, so that "ACTION ITEM:" wins over a configured "ACTION:" on one line.
    ordered = sorted(dict.fromkeys(m for m in markers if m.strip(": ")), key=len, reverse=True)
    groups = {f"m{i}": marker for i, marker in enumerate(ordered)}
    bodies = "|".join(f"(?P<{g}>{_marker_pattern(m)})" for g, m in groups.items())
    if not bodies:
        bodies = r"(?!)"
    return _MarkerFinder(
        at_start=re.compile(rf"{_DECORATION}(?:{bodies})", re.I),
        anywhere=re.compile(rf"(?<!\w)(?:{bodies})"),
        markers=groups,
    )


def _marker_pattern(marker: str) -> str:
    """``"ACTION ITEM:"`` → words joined by any spacing, emphasis allowed before the colon
    (``**Decision**:``); a marker without a colon must end at a word's end."""
    words = marker.strip().rstrip(":").split()
    body = r"[\s_-]+".join(re.escape(word) for word in words)
    if marker.strip().endswith(":"):
        return rf"{body}[*_`]*\s*:"
    return rf"{body}(?!\w)[*_`]*\s*:?"
