"""Events (ZeroMQ PUB, and the daemon's in-process bus): two frames, ``[topic, json-event]``.
Topics are built so that a subscriber filters by prefix (see :func:`topic_of`)."""

from __future__ import annotations

from typing import Any, Final

from agentplex.protocol.enums import ChunkKind, SessionStatus, Stream
from agentplex.protocol.panels import (
    Decision,
    Insight,
    MemberInfo,
    PanelInfo,
    PanelMessage,
    StopReason,
)
from agentplex.protocol.values import SessionInfo, Tagged, Usage


class Chunk(Tagged, frozen=True, kw_only=False, tag="agent.chunk"):
    """One piece of what an agent said. Also a transcript record, byte for byte.

    A backend's driver makes it with what it knows (``Chunk(ChunkKind.TEXT, "hi")``); the
    daemon fills in the session's part (``session_id``, ``seq``, ``stream``, ``ts``,
    ``turn``, ``b64``) with :func:`msgspec.structs.replace` before logging and publishing
    it, so a chunk is never copied field by field. A published chunk always has them:
    ``seq`` counts from 1 per session with no gaps; ``b64`` holds the exact bytes when
    the line was not valid UTF-8 (``text`` then shows replacement characters).
    """

    kind: ChunkKind
    text: str
    partial: bool = False
    tool_name: str | None = None
    tool_input: Any = None
    is_error: bool = False
    usage: Usage | None = None
    cli_session_id: str | None = None
    model: str | None = None
    request_id: str | None = None
    """For a ``permission_request``: what ``Driver.answer_permission`` needs to answer it."""
    session_id: str = ""
    seq: int = 0
    stream: Stream | None = None
    """None only while a driver holds the chunk; every published chunk says its stream."""
    ts: float = 0.0
    turn: int = 0
    b64: str | None = None
    elided: int = 0
    """Only on the events socket, never in a transcript or a replay: this message stands
    for ``elided`` chunks from ``seq`` on whose message was too large to publish (over the
    daemon's ``pub_max_message_bytes``); ``text`` is empty. Fetch them with ``replay``
    (``follow()`` does). 0 for every real chunk."""


class ChunkBatch(Tagged, frozen=True, tag="agent.chunks"):
    """A run of plain chunks from one read of one stream, sent as one message.

    It stands for the chunks ``first_seq`` .. ``last_seq``: ``texts[i]`` is the text of
    chunk ``first_seq + i``, whose kind, stream, ts and turn are the batch's. Published on
    the same topic as single chunks and logged as one transcript record; the client
    library's ``follow``/``replay`` and transcript reader hand out the single chunks.
    """

    session_id: str
    first_seq: int
    last_seq: int
    stream: Stream
    kind: ChunkKind
    texts: list[str]
    ts: float
    turn: int = 0

    def chunks(self) -> list[Chunk]:
        """The single chunks this batch stands for."""
        return [
            Chunk(
                self.kind,
                text,
                session_id=self.session_id,
                seq=self.first_seq + i,
                stream=self.stream,
                ts=self.ts,
                turn=self.turn,
            )
            for i, text in enumerate(self.texts)
        ]


AnyChunk = Chunk | ChunkBatch
"""What a chunk topic carries, and what a replay page holds."""


def expand(item: AnyChunk) -> list[Chunk]:
    """The single chunks a chunk message stands for."""
    return [item] if isinstance(item, Chunk) else item.chunks()


class SessionCreated(Tagged, frozen=True, tag="session.created"):
    session: SessionInfo


class SessionTerminated(Tagged, frozen=True, tag="session.terminated"):
    session: SessionInfo
    reason: str


class SessionListChanged(Tagged, frozen=True, tag="session.list_changed"):
    sessions: list[SessionInfo]
    active: str | None = None


class ActiveChanged(Tagged, frozen=True, tag="session.active_changed"):
    session_id: str | None


class StatusChanged(Tagged, frozen=True, tag="session.status_changed"):
    session_id: str
    status: SessionStatus
    previous: SessionStatus
    ts: float


class Heartbeat(Tagged, frozen=True, tag="daemon.heartbeat"):
    """Published every few seconds so a subscriber can tell a quiet daemon from a dead one."""

    pid: int
    ts: float
    sessions: int


class SyncMark(Tagged, frozen=True, tag="daemon.sync"):
    token: str


# ---------------------------------------------------------------------- panels


class PanelEvent(Tagged, frozen=True, kw_only=True):
    """Base of a panel's events: each names its panel; the topic is
    ``panel.<what>.<panel-id>`` (subscribe to ``panel.`` for every panel's)."""

    panel_id: str


class PanelMessageEvent(PanelEvent, frozen=True, tag="panel.message"):
    """A message was posted (``updated``: a reaction changed one already posted)."""

    message: PanelMessage
    updated: bool = False


class PanelTurnStarted(PanelEvent, frozen=True, tag="panel.turn_started"):
    """A member was handed its turn (the "typing" indicator)."""

    participant: str
    turn: int
    round: int
    ts: float


class PanelParticipantJoined(PanelEvent, frozen=True, tag="panel.participant_joined"):
    member: MemberInfo


class PanelParticipantLeft(PanelEvent, frozen=True, tag="panel.participant_left"):
    participant: str
    reason: str


class PanelUpdated(PanelEvent, frozen=True, tag="panel.updated"):
    """The panel's status, round or turn changed."""

    panel: PanelInfo


class PanelInsightEvent(PanelEvent, frozen=True, tag="panel.insight"):
    insight: Insight


class PanelDecisionEvent(PanelEvent, frozen=True, tag="panel.decision"):
    decision: Decision


class PanelEnded(PanelEvent, frozen=True, tag="panel.ended"):
    panel: PanelInfo
    stop_reason: StopReason


PANEL_TOPIC: Final = b"panel."


Event = (
    Chunk
    | ChunkBatch
    | SessionCreated
    | SessionTerminated
    | SessionListChanged
    | ActiveChanged
    | StatusChanged
    | Heartbeat
    | SyncMark
    | PanelMessageEvent
    | PanelTurnStarted
    | PanelParticipantJoined
    | PanelParticipantLeft
    | PanelUpdated
    | PanelInsightEvent
    | PanelDecisionEvent
    | PanelEnded
)

CHUNK_TOPIC: Final = b"agent.chunk."
SESSION_TOPIC: Final = b"session."
DAEMON_TOPIC: Final = b"daemon."


def chunk_topic(session_id: str) -> bytes:
    """The topic of one session's chunks: ``agent.chunk.<session-id>``."""
    return CHUNK_TOPIC + session_id.encode()


def topic_of(event: Event) -> bytes:
    """The topic frame for an event.

    ``agent.chunk.<id>`` for chunks; ``session.<what>.<id>`` for one session's lifecycle;
    ``session.<what>`` for the whole table; ``daemon.<what>`` for the daemon itself.
    Subscribe to ``agent.chunk.`` for all chunks, to ``session.`` for lifecycle only.
    """
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    match event:
        case Chunk(session_id=sid) | ChunkBatch(session_id=sid):
            return CHUNK_TOPIC + sid.encode()
        case StatusChanged(session_id=sid):
            return f"{tag}.{sid}".encode()
        case SessionCreated(session=info) | SessionTerminated(session=info):
            return f"{tag}.{info.id}".encode()
        case SyncMark(token=token):
            return f"{tag}.{token}".encode()
        case PanelEvent(panel_id=panel_id):
            return f"{tag}.{panel_id}".encode()
        case _:
            return tag.encode()
