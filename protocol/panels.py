"""Panels on the wire and on disk: several members (agent sessions and humans) discussing one
topic in turns, the messages they exchange, the positions and decisions they record.

These are the shared nouns of ``agentplex.supervisor.panels`` (the orchestrator and its pure
parts: speaker selection, round shapes, termination, consensus, analytics), of the client and
of the CLI. Every record a panel writes (``panel_messages.jsonl``, ``insights/…``) is one of
these Structs, so the message log alone is enough to recompute a panel's analytics.
"""

from __future__ import annotations

import enum

import msgspec

from agentplex.protocol.values import Usage


class PanelType(enum.StrEnum):
    """What kind of discussion; each comes with default rules (``PanelRules.for_type``)."""

    MULTI_PERSONA = "multi_persona"
    DEBATE = "debate"
    BRAINSTORM = "brainstorm"
    FOCUS_GROUP = "focus_group"
    EXPERT_CONSULTATION = "expert_consultation"
    DECISION_MAKING = "decision_making"


class ParticipantRole(enum.StrEnum):
    MODERATOR = "moderator"
    EXPERT = "expert"
    ADVOCATE = "advocate"
    CRITIC = "critic"
    OBSERVER = "observer"
    FACILITATOR = "facilitator"


class ParticipantKind(enum.StrEnum):
    AGENT = "agent"
    """An agentplex session the orchestrator starts, prompts and reads."""
    HUMAN = "human"
    """A person posting through the CLI or the client library (``panel say``)."""


class Stance(enum.StrEnum):
    """A position a member is asked to hold (injected into its instructions)."""

    FOR = "for"
    AGAINST = "against"
    NEUTRAL = "neutral"


class SpeakerPolicy(enum.StrEnum):
    """Who speaks next."""

    ROUND_ROBIN = "round_robin"
    STRICT_ALTERNATION = "strict_alternation"
    MODERATOR = "moderator"
    """The moderator names the next speaker; a bad name falls back to round robin."""
    MENTION = "mention"
    """``@Name`` in a reply makes that member next; else round robin."""
    GRAPH = "graph"
    """Only the transitions ``PanelConfig.transitions`` allows."""
    MANUAL = "manual"
    """A human picks (``panel next``); nothing happens until one does."""


class RoundShape(enum.StrEnum):
    """How one round runs."""

    SEQUENTIAL = "sequential"
    """One member after another; each sees every message since its last turn."""
    SIMULTANEOUS = "simultaneous"
    """All members answer in parallel, blind to this round; round r carries the others'
    round r-1 answers, never the member's own (Du et al. 2023)."""
    REVIEW = "review"
    """Members rank the others' answers, shown anonymised as "Response A/B/C"."""


class PanelStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"

    @property
    def ended(self) -> bool:
        return self in (PanelStatus.COMPLETED, PanelStatus.ARCHIVED)


class PanelAction(enum.StrEnum):
    """What ``panel pause|resume|end|archive`` asks of a panel."""

    PAUSE = "pause"
    RESUME = "resume"
    END = "end"
    ARCHIVE = "archive"


class MessageType(enum.StrEnum):
    CONVERSATION = "conversation"
    QUESTION = "question"
    ANSWER = "answer"
    INSIGHT = "insight"
    DECISION = "decision"
    POSITION = "position"
    SUMMARY = "summary"
    SYSTEM = "system"
    """Said by the orchestrator itself (a fallback, a member that failed, the end)."""


class Position(enum.StrEnum):
    """A voting member's answer to a proposal (``panel decide``)."""

    AGREE = "agree"
    AGREE_WITH_CONDITIONS = "agree_with_conditions"
    DISAGREE = "disagree"
    ABSTAIN = "abstain"
    VETO = "veto"


class ConsensusLevel(enum.StrEnum):
    UNANIMOUS = "unanimous"
    STRONG_MAJORITY = "strong_majority"
    """At least 4 in 5 of the counted positions agree (``≥ 0.8``)."""
    SIMPLE_MAJORITY = "simple_majority"
    """At least 3 in 5 agree (``≥ 0.6``)."""
    NO_CONSENSUS = "no_consensus"
    CONFLICT = "conflict"
    """A veto, or agreement and disagreement evenly split with no majority either way."""


class InsightKind(enum.StrEnum):
    INSIGHT = "insight"
    DECISION = "decision"
    ACTION_ITEM = "action_item"
    POSITION = "position"


class StopReason(enum.StrEnum):
    """Why a panel ended: each termination condition has its own."""

    MAX_ROUNDS = "max_rounds"
    MAX_MESSAGES = "max_messages"
    MARKER = "marker"
    TOKEN_BUDGET = "token_budget"
    COST_BUDGET = "cost_budget"
    WALL_CLOCK = "wall_clock"
    ENDED_BY_REQUEST = "ended_by_request"
    MEMBERS_GONE = "members_gone"
    MODERATOR_VERDICT = "moderator_verdict"


class MemberSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One member as asked for: ``PERSONA[:BACKEND[:MODEL]][@STANCE]`` on the CLI."""

    name: str
    """Unique in the panel, case-insensitive (``@name`` mentions it); the persona's name by
    default."""
    kind: ParticipantKind = ParticipantKind.AGENT
    persona: str | None = None
    backend: str | None = None
    model: str | None = None
    role: ParticipantRole = ParticipantRole.EXPERT
    stance: Stance | None = None
    votes: bool = True


class PanelConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a panel was created with (``panel_config.json``); unset knobs take the
    panel type's defaults."""

    topic: str
    type: PanelType = PanelType.MULTI_PERSONA
    members: list[MemberSpec] = []
    moderator: str | None = None
    """The member name of the moderator (must be one of ``members``)."""
    speaker_policy: SpeakerPolicy | None = None
    shape: RoundShape = RoundShape.SEQUENTIAL
    max_rounds: int | None = None
    until: list[str] = []
    """Termination conditions in the ``--until`` grammar (``supervisor/panels/termination``),
    combined with ``or`` unless written with ``and``."""
    transitions: dict[str, list[str]] = {}
    """For ``SpeakerPolicy.GRAPH``: member name → who may speak after it."""
    max_consecutive: int | None = None
    consensus_threshold: float | None = None
    require_moderator: bool | None = None
    voting: bool | None = None
    anonymous_voting: bool | None = None
    min_participants: int | None = None
    max_participants: int | None = None
    """Both within 2 to 8 (``supervisor/panels/rules``); unset: 2 and 8."""
    markers: list[str] = msgspec.field(
        default_factory=lambda: ["DECISION:", "ACTION ITEM:", "INSIGHT:", "POSITION:"]
    )
    max_message_chars: int = 20_000
    history_budget_chars: int = 24_000
    """What a member whose backend cannot resume is re-sent of the discussion, at most."""
    tag: str | None = None
    cwd: str | None = None


class Reaction(msgspec.Struct, frozen=True, kw_only=True):
    participant: str
    emoji: str
    ts: float


class PanelMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``panel_messages.jsonl``: what a member (or a human, or the orchestrator)
    said in the discussion."""

    id: str
    panel_id: str
    participant: str
    """The member's name (``"system"`` for the orchestrator)."""
    text: str
    ts: float
    turn: int
    round: int
    type: MessageType = MessageType.CONVERSATION
    reply_to: str | None = None
    thread_id: str | None = None
    mentions: list[str] = []
    reactions: list[Reaction] = []
    usage: Usage | None = None
    latency_ms: int | None = None
    """From the turn being handed to the member's process to its reply (agents only)."""
    interrupted: bool = False
    """A partial reply cut by a crash; the turn is asked again."""


class Vote(msgspec.Struct, frozen=True, kw_only=True):
    participant: str
    position: Position
    reason: str = ""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A proposal put to the voting members, their positions and the consensus reached."""

    id: str
    panel_id: str
    proposal: str
    votes: list[Vote]
    level: ConsensusLevel
    agreement: float
    """Agreeing positions over counted ones (abstentions not counted)."""
    action_items: list[str] = []
    ts: float = 0.0
    source: str | None = None
    """The insight (``<message id>-i<n>``) whose ``DECISION:`` line a panel that votes put
    to the vote itself (``supervisor/panels/proposals.py``); None for ``panel decide``."""


class Insight(msgspec.Struct, frozen=True, kw_only=True):
    """A marker caught in a message (``DECISION: …``, ``ACTION ITEM: …``)."""

    id: str
    panel_id: str
    kind: InsightKind
    text: str
    participant: str
    message_id: str
    ts: float
    responsible: str | None = None
    """For an action item: the member it names, if any."""


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A member as the panel knows it now."""

    spec: MemberSpec
    session_id: str | None = None
    """Its agentplex session (agents), once started."""
    messages: int = 0
    active: bool = True


class PanelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A panel at a glance (``panel ls``, ``panel show``)."""

    id: str
    config: PanelConfig
    status: PanelStatus
    members: list[MemberInfo]
    created_at: float
    round: int = 0
    turn: int = 0
    messages: int = 0
    speaking: str | None = None
    stop_reason: StopReason | None = None
    usage: Usage = Usage()
