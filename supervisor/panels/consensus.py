"""Consensus: the positions voting members take on a proposal, the level they reach, and the
text of a position round (``panel decide``).

The rules, in one place:

- A vote is agree, agree with conditions, disagree, abstain or veto. **Agree with
  conditions counts as agreement** (its conditions become action items of the decision).
- **Abstentions are not counted**: they neither help nor hinder, so adding or removing
  them never changes the level or the agreement. Everything else is counted.
- ``agreement`` = agreeing votes / counted votes (0.0 when nothing is counted). A veto is
  counted as not agreeing.
- The level is the first of these that holds, compared in integers (counts cross-multiplied
  with the exact fraction of the threshold, never floats, so 4 of 5 is exactly 0.8):

  1. ``CONFLICT`` — any veto, whatever the others say. A round that offered no veto
     (``veto=False``) counts a veto as a disagreement instead.
  2. ``NO_CONSENSUS`` — nothing counted (no votes, or all abstain).
  3. ``UNANIMOUS`` — every counted vote agrees (3 of 3; 1 agree + 2 abstain too).
  4. ``STRONG_MAJORITY`` — agreement ≥ max(4/5, threshold) (4 of 5).
  5. ``SIMPLE_MAJORITY`` — agreement ≥ threshold, 3/5 by default (2 of 3 = 0.667).
  6. ``CONFLICT`` — two equal blocs: as many disagree as agree, and at least two on each
     side (2 vs 2, 3 vs 3). The panel is split into camps, not merely short of a majority.
  7. ``NO_CONSENSUS`` — otherwise (1 of 2: one dissenter is no camp; 2 of 5).

- A threshold (``PanelConfig.consensus_threshold``) moves the bar of consensus; it must be
  over 1/2 and at most 1, so that two opposed camps can never both reach it.
- One vote per participant (names compared case-insensitively); a second is refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Final

import msgspec

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import ConsensusLevel, Decision, Position, Vote
from agentplex.supervisor.panels.insights import marked_lines

STRONG_MAJORITY: Final = Fraction(4, 5)
SIMPLE_MAJORITY: Final = Fraction(3, 5)
CAMP: Final = 2
"""The fewest members on each side of an even split for it to be a conflict."""

NO_POSITION: Final = "(no position stated)"
"""The reason recorded for a member whose reply stated no position (an abstention)."""

AGREEING: Final = frozenset({Position.AGREE, Position.AGREE_WITH_CONDITIONS})
"""The positions that count as agreement."""

_PHRASES: Final[tuple[tuple[str, Position], ...]] = (
    (
        r"agree[\s,_-]+(?:but[\s_-]+)?with[\s_-]+(?:some[\s_-]+)?conditions?",
        Position.AGREE_WITH_CONDITIONS,
    ),
    (r"agree[\s_-]+conditionally", Position.AGREE_WITH_CONDITIONS),
    (r"conditionally[\s_-]+agree", Position.AGREE_WITH_CONDITIONS),
    (r"conditional[\s_-]+agreement", Position.AGREE_WITH_CONDITIONS),
    (r"disagrees?|disagreement", Position.DISAGREE),
    (r"abstains?|abstention|abstaining", Position.ABSTAIN),
    (r"veto(?:e?s|ed)?", Position.VETO),
    (r"agrees?|agreement", Position.AGREE),
)
_PHRASE: Final = re.compile(
    r"[\s\"'(\[<*_`]*(?:i[\s_]+)?(?:strongly[\s_]+|fully[\s_]+|completely[\s_]+)?"
    + "(?:"
    + "|".join(f"(?P<p{i}>{pattern})" for i, (pattern, _) in enumerate(_PHRASES))
    + r")(?![\w|/])(?!\s*[|/])",
    re.I,
)
_DASHES: Final = "\u2013\u2014-"
"""En dash, em dash, hyphen: members separate a position from its reason with any."""
_MARKER: Final = re.compile(rf"(?<![\w])position(?![\w])[\s*_`]*[:={_DASHES}]", re.I)
_REASON_LEAD: Final = f" \t\"')]>*_`:;,.!{_DASHES}"
_SEPARATED: Final = re.compile(rf"[\s*_`\"')\]>]*(?:$|[:;,.!({_DASHES}])")
"""After a position with no marker before it: the end, or punctuation before a reason."""


def consensus(
    votes: Sequence[Vote], threshold: float | None = None, *, veto: bool = True
) -> tuple[ConsensusLevel, float]:
    """The level ``votes`` reach and their agreement (rules in the module docstring)."""
    bar = agreement_bar(threshold)
    counts = _counts(votes, veto=veto)
    agree = sum(counts[p] for p in AGREEING)
    against = counts[Position.DISAGREE] + counts[Position.VETO]
    counted = agree + against
    agreement = agree / counted if counted else 0.0
    if counts[Position.VETO]:
        return ConsensusLevel.CONFLICT, agreement
    if not counted:
        return ConsensusLevel.NO_CONSENSUS, agreement
    if agree == counted:
        return ConsensusLevel.UNANIMOUS, agreement
    if _reaches(agree, counted, max(STRONG_MAJORITY, bar)):
        return ConsensusLevel.STRONG_MAJORITY, agreement
    if _reaches(agree, counted, bar):
        return ConsensusLevel.SIMPLE_MAJORITY, agreement
    if agree == against >= CAMP:
        return ConsensusLevel.CONFLICT, agreement
    return ConsensusLevel.NO_CONSENSUS, agreement


def agreement_bar(threshold: float | None) -> Fraction:
    """The exact fraction of agreement a consensus needs: ``threshold`` as written (0.8 is
    4/5, not the float just above it), 3/5 when None. Raises :class:`InvalidArgument` unless
    it is over 1/2 and at most 1."""
    if threshold is None:
        return SIMPLE_MAJORITY
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise InvalidArgument(f"consensus threshold must be a number, not {threshold!r}")
    # repr gives the shortest decimal that reads back as this float: what the user wrote.
    bar = Fraction(repr(float(threshold)))
    if not Fraction(1, 2) < bar <= 1:
        raise InvalidArgument(
            f"consensus threshold must be over 0.5 and at most 1, not {threshold!r}"
        )
    return bar


def position_request(proposal: str, *, veto: bool) -> str:
    """What a voting member is told in a position round: the proposal and the one line its
    reply must hold (:func:`parse_position` reads it back)."""
    choices = ["agree", "agree with conditions", "disagree", "abstain"]
    if veto:
        choices.append("veto")
    lines = [
        "The panel is deciding on this proposal:",
        "",
        *(f"    {line}" for line in proposal.strip().splitlines()),
        "",
        "State your position on it on one line of your reply, in exactly this form:",
        f"POSITION: {'|'.join(choices)} — one sentence of reason",
        "",
        "Choose one. Agree with conditions counts as agreement: name the condition in "
        "your reason. Abstain if the proposal is outside what you can judge.",
    ]
    if veto:
        lines.append(
            "A veto blocks the decision whatever the others say: use it only for an "
            "objection you cannot accept in any form."
        )
    return "\n".join(lines)


def parse_position(text: str) -> tuple[Position, str] | None:
    """A member's position and its reason from its reply, or None if it states none.

    The last line with a ``POSITION`` marker that names one position wins (the marker may
    sit anywhere in the line, in any case, with ``:``, ``-`` or ``—`` after it, in
    Markdown emphasis). Without such a line, a reply whose first line opens with a position
    ("Disagree — too risky.") is read as that. A line naming several ("agree|disagree", as
    the request's template does) names none."""
    found: tuple[Position, str] | None = None
    for line in text.splitlines():
        for marker in _MARKER.finditer(line):
            parsed = _position_at(line[marker.end() :])
            if parsed is not None:
                found = parsed
                break
    if found is not None:
        return found
    first = next((line for line in text.splitlines() if line.strip()), "")
    return _position_at(first, separated=True)


def vote_from_reply(participant: str, reply: str) -> Vote:
    """A member's vote from its reply; a reply that states no position is an abstention
    (it is not counted), its reason saying so."""
    parsed = parse_position(reply)
    if parsed is None:
        return Vote(participant=participant, position=Position.ABSTAIN, reason=NO_POSITION)
    position, reason = parsed
    return Vote(participant=participant, position=position, reason=reason)


def decision(
    panel_id: str,
    proposal: str,
    votes: Sequence[Vote],
    *,
    threshold: float | None,
    now: float,
    veto: bool = True,
    decision_id: str | None = None,
) -> Decision:
    """The record of a position round: the votes (a veto the round did not offer recorded
    as the disagreement it counted as), the level and agreement they reach, and the action
    items — ``ACTION ITEM:`` lines of the proposal and of the reasons, then each condition
    of an agree-with-conditions vote. The id is ``decision_id``, else derived from the
    panel, proposal and time, so recording the same round again yields the same id."""
    if not proposal.strip():
        raise InvalidArgument("a decision needs a proposal with some text")
    recorded = [_as_counted(vote, veto=veto) for vote in votes]
    level, agreement = consensus(recorded, threshold, veto=veto)
    return Decision(
        id=decision_id or _decision_id(panel_id, proposal, now),
        panel_id=panel_id,
        proposal=proposal.strip(),
        votes=recorded,
        level=level,
        agreement=agreement,
        action_items=action_items(proposal, recorded),
        ts=now,
    )


def action_items(proposal: str, votes: Sequence[Vote]) -> list[str]:
    """The action items of a decision, each once, in order (see :func:`decision`)."""
    items = [line.text for line in marked_lines(proposal, ("ACTION ITEM:",))]
    for vote in votes:
        items += [line.text for line in marked_lines(vote.reason, ("ACTION ITEM:",))]
    for vote in votes:
        if vote.position is Position.AGREE_WITH_CONDITIONS and vote.reason.strip():
            items.append(f"{vote.reason.strip()} (condition of {vote.participant})")
    return list(dict.fromkeys(items))


def _counts(votes: Sequence[Vote], *, veto: bool) -> dict[Position, int]:
    counts = dict.fromkeys(Position, 0)
    voters: set[str] = set()
    for vote in votes:
        voter = vote.participant.lower()
        if voter in voters:
            raise InvalidArgument(f"{vote.participant} voted twice on one proposal")
        voters.add(voter)
        counts[_as_counted(vote, veto=veto).position] += 1
    return counts


def _as_counted(vote: Vote, *, veto: bool) -> Vote:
    if vote.position is Position.VETO and not veto:
        return msgspec.structs.replace(vote, position=Position.DISAGREE)
    return vote


def _reaches(agree: int, counted: int, bar: Fraction) -> bool:
    """agree / counted ≥ bar, in integers."""
    return agree * bar.denominator >= counted * bar.numerator


def _position_at(text: str, *, separated: bool = False) -> tuple[Position, str] | None:
    """The position ``text`` opens with and the reason after it; with ``separated``, only
    if punctuation or the end follows ("Agreement is far off" states no position)."""
    match = _PHRASE.match(text)
    if match is None or match.lastgroup is None:
        return None
    if separated and not _SEPARATED.match(text, match.end()):
        return None
    position = _PHRASES[int(match.lastgroup[1:])][1]
    return position, text[match.end() :].strip().lstrip(_REASON_LEAD).strip().rstrip("*_`")


def _decision_id(panel_id: str, proposal: str, now: float) -> str:
    digest = hashlib.sha256(f"{panel_id}\0{proposal.strip()}\0{now!r}".encode()).hexdigest()
    return f"{panel_id}-d{digest[:12]}"
