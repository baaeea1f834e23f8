"""The agentplex wire protocol: every request, reply, event and transcript record.

Shared by the daemon and every client. All messages are frozen msgspec Structs in
tagged unions (the tag field is ``type``) encoded as JSON, so a plugin in any language
can speak them.

Control (ZeroMQ ROUTER in the daemon, DEALER in clients): a client sends one frame, a
JSON request carrying ``v`` (the protocol version) and ``id`` (a request id); the daemon
answers with one frame, a JSON reply carrying the same ``id``.

Events (ZeroMQ PUB): two frames, ``[topic, json-event]``. Topics are built so that a
subscriber filters by prefix (see :func:`topic_of`).

Schema evolution: new fields always get defaults and existing fields never change type.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
"""Largest control frame the daemon accepts; larger ones get a ``frame_too_large`` error."""


class SessionStatus(enum.StrEnum):
    """Where a session is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    WAITING_INPUT = "waiting_input"
    EXITED = "exited"
    TERMINATED = "terminated"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def ended(self) -> bool:
        """True once the session can take no more messages."""
        return self in _ENDED


_ENDED: Final = frozenset({SessionStatus.EXITED, SessionStatus.TERMINATED, SessionStatus.FAILED})


class ChunkKind(enum.StrEnum):
    """What a chunk of agent output is, whichever vendor's CLI produced it."""

    TEXT = "text"
    THINKING = "thinking"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    RESULT = "result"
    ERROR = "error"
    SYSTEM = "system"
    PERMISSION_REQUEST = "permission_request"
    RAW = "raw"


class Stream(enum.StrEnum):
    """Where a chunk came from: the child's stdout or stderr, or the daemon itself."""

    STDOUT = "stdout"
    STDERR = "stderr"
    DAEMON = "daemon"


class _Msg(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every tagged message."""


# --------------------------------------------------------------------------- values


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Token and cost figures a CLI reports for a turn (or totals for a session)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int | None = None


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one session, as ``list`` and events report it."""

    id: str
    backend: str
    persona: str | None
    tag: str | None
    cwd: str
    status: SessionStatus
    created_at: float
    persona_icon: str | None = None
    mode: str = "turn"
    model: str | None = None
    rss_bytes: int | None = None
    """Resident memory of all its processes, sampled every ``limit_interval``."""
    cpu_percent: float | None = None
    """CPU of all its processes since the previous sample (100 = one core)."""
    pid: int | None
    cli_session_id: str | None
    turns: int
    chunks: int
    transcript: str
    queued: int = 0
    exit_code: int | None = None
    ended_reason: str | None = None
    usage: Usage = Usage()


class BackendInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One registered backend plugin and what it can do."""

    id: str
    modes: list[str]
    description: str
    available: bool
    capabilities: list[str] = []
    executable: str | None = None
    version: str | None = None
    problem: str | None = None


class PersonaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One persona template."""

    name: str
    icon: str
    description: str
    backend: str | None
    model: str | None
    allowed_tools: list[str]
    permission_policy: str
    source: str


class DaemonInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who answered: the daemon's identity and where it keeps things."""

    pid: int
    version: str
    protocol: int
    runtime_dir: str
    state_dir: str
    started_at: float
    sessions: int


# --------------------------------------------------------------------------- requests


class _Request(_Msg, frozen=True, kw_only=True):
    id: int = 0
    v: int = PROTOCOL_VERSION


class Start(_Request, frozen=True, tag="start"):
    """Start a session. ``argv`` is the command for the ``exec`` backend.

    With no ``backend`` the persona's default backend is used, else ``demo``; ``mode``,
    ``model`` and ``permission_policy`` override the backend's and persona's defaults.
    """

    backend: str | None = None
    prompt: str | None = None
    persona: str | None = None
    mode: str | None = None
    model: str | None = None
    permission_policy: str | None = None
    tag: str | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    argv: list[str] = []


class Send(_Request, frozen=True, tag="send"):
    """Send a message to a session (a full id or unique prefix; None: the active one)."""

    message: str
    session: str | None = None


class Interrupt(_Request, frozen=True, tag="interrupt"):
    """Interrupt the running turn: SIGINT to the session's process group."""

    session: str | None = None


class Terminate(_Request, frozen=True, tag="terminate"):
    """End a session: SIGTERM to its whole tree, SIGKILL after ``grace`` seconds."""

    session: str | None = None
    grace: float | None = None


class ListSessions(_Request, frozen=True, tag="list"):
    """List every session the daemon knows."""


class Switch(_Request, frozen=True, tag="switch"):
    """Make a session the active one."""

    session: str


class Inspect(_Request, frozen=True, tag="inspect"):
    """Describe one session (a full id or unique prefix; None: the active one)."""

    session: str | None = None


class Permit(_Request, frozen=True, tag="permit"):
    """Answer the agent's pending permission request (a session in ``waiting_input``)."""

    allow: bool
    session: str | None = None
    request_id: str | None = None


class Replay(_Request, frozen=True, tag="replay"):
    """Every chunk of a session from ``from_seq`` on, at most ``limit`` per page."""

    session: str
    from_seq: int = 1
    limit: int = 10_000


class ListPersonas(_Request, frozen=True, tag="personas"):
    """List every persona template, and the template files that could not be read."""


class ListBackends(_Request, frozen=True, tag="backends"):
    """List every backend plugin and whether its CLI is available."""


class Sync(_Request, frozen=True, tag="sync"):
    """Ask the daemon to publish a ``daemon.sync`` event carrying ``token``.

    A subscriber uses it to learn that its subscription is live (ZeroMQ's slow joiner).
    """

    token: str


class Ping(_Request, frozen=True, tag="ping"):
    """Ask who the daemon is."""


Request = (
    Start
    | Send
    | Interrupt
    | Terminate
    | ListSessions
    | Inspect
    | Switch
    | Permit
    | Replay
    | ListBackends
    | ListPersonas
    | Sync
    | Ping
)


class Envelope(msgspec.Struct, frozen=True):
    """What the daemon can still read of a request it cannot decode, to address its error."""

    id: Any = None
    v: Any = None
    type: Any = None


# --------------------------------------------------------------------------- replies


class _Reply(_Msg, frozen=True, kw_only=True):
    id: int = 0


class Started(_Reply, frozen=True, tag="started"):
    session: SessionInfo


class Sent(_Reply, frozen=True, tag="sent"):
    session_id: str
    queued: int = 0


class Interrupted(_Reply, frozen=True, tag="interrupted"):
    session_id: str


class Terminated(_Reply, frozen=True, tag="terminated"):
    session: SessionInfo
    escalated: bool = False


class Sessions(_Reply, frozen=True, tag="sessions"):
    sessions: list[SessionInfo]
    active: str | None = None


class Described(_Reply, frozen=True, tag="described"):
    session: SessionInfo


class Switched(_Reply, frozen=True, tag="switched"):
    session_id: str


class Backends(_Reply, frozen=True, tag="backends"):
    backends: list[BackendInfo]


class Permitted(_Reply, frozen=True, tag="permitted"):
    session_id: str
    request_id: str


class Replayed(_Reply, frozen=True, tag="replayed"):
    """One page of chunks (``agent.chunk`` or ``agent.chunks`` objects, in seq order; the
    first may begin before ``from_seq``) and where the session stands.

    ``last_seq`` is the session's newest seq; more pages follow while the last chunk's
    seq is below it. ``ended`` says no chunk will ever follow ``last_seq``.
    """

    session_id: str
    chunks: list[msgspec.Raw]
    last_seq: int
    ended: bool


class Personas(_Reply, frozen=True, tag="personas"):
    personas: list[PersonaInfo]
    problems: list[str] = []


class Synced(_Reply, frozen=True, tag="synced"):
    token: str


class Pong(_Reply, frozen=True, tag="pong"):
    daemon: DaemonInfo


class Error(_Reply, frozen=True, tag="error"):
    """A request failed; ``code`` is stable and names the condition."""

    code: str
    message: str


Reply = (
    Started
    | Sent
    | Interrupted
    | Terminated
    | Sessions
    | Described
    | Switched
    | Permitted
    | Replayed
    | Backends
    | Personas
    | Synced
    | Pong
    | Error
)


# --------------------------------------------------------------------------- events


class Chunk(_Msg, frozen=True, tag="agent.chunk"):
    """One piece of what an agent said. Also a transcript record, byte for byte.

    ``seq`` counts from 1 per session with no gaps; ``b64`` holds the exact bytes when
    the line was not valid UTF-8 (``text`` then shows replacement characters).
    """

    session_id: str
    seq: int
    stream: Stream
    kind: ChunkKind
    text: str
    ts: float
    turn: int = 0
    partial: bool = False
    tool_name: str | None = None
    tool_input: Any = None
    is_error: bool = False
    usage: Usage | None = None
    cli_session_id: str | None = None
    model: str | None = None
    request_id: str | None = None
    b64: str | None = None


class ChunkBatch(_Msg, frozen=True, tag="agent.chunks"):
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
                session_id=self.session_id,
                seq=self.first_seq + i,
                stream=self.stream,
                kind=self.kind,
                text=text,
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


class SessionCreated(_Msg, frozen=True, tag="session.created"):
    session: SessionInfo


class SessionTerminated(_Msg, frozen=True, tag="session.terminated"):
    session: SessionInfo
    reason: str


class SessionListChanged(_Msg, frozen=True, tag="session.list_changed"):
    sessions: list[SessionInfo]
    active: str | None = None


class ActiveChanged(_Msg, frozen=True, tag="session.active_changed"):
    session_id: str | None


class StatusChanged(_Msg, frozen=True, tag="session.status_changed"):
    session_id: str
    status: SessionStatus
    previous: SessionStatus
    ts: float


class Heartbeat(_Msg, frozen=True, tag="daemon.heartbeat"):
    """Published every few seconds so a subscriber can tell a quiet daemon from a dead one."""

    pid: int
    ts: float
    sessions: int


class SyncMark(_Msg, frozen=True, tag="daemon.sync"):
    token: str


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
        case _:
            return tag.encode()


# --------------------------------------------------------------------------- transcript


class Header(_Msg, frozen=True, tag="header"):
    """First line of every transcript."""

    session_id: str
    backend: str
    persona: str | None
    tag: str | None
    argv: list[str]
    cwd: str
    started_at: float
    protocol: int = PROTOCOL_VERSION


class MessageIn(_Msg, frozen=True, tag="message.in"):
    """A message a person or program sent to the session."""

    text: str
    ts: float
    turn: int


class ProcessSpawned(_Msg, frozen=True, tag="process.spawned"):
    pid: int
    argv: list[str]
    ts: float
    turn: int


class ProcessExit(_Msg, frozen=True, tag="process.exit"):
    """A session process ended: ``code`` when it exited, ``signal`` when a signal killed it."""

    pid: int
    ts: float
    code: int | None = None
    signal: int | None = None


class Recovered(_Msg, frozen=True, tag="daemon.recovered"):
    """Written when a restarted daemon takes a session back after a crash."""

    ts: float
    previous: SessionStatus
    status: SessionStatus
    damaged_lines: int = 0


class Footer(_Msg, frozen=True, tag="footer"):
    """Last line of a finished transcript."""

    ts: float
    status: SessionStatus
    reason: str
    chunks: int
    turns: int
    usage: Usage = Usage()


Record = Header | MessageIn | Chunk | ChunkBatch | ProcessSpawned | ProcessExit | Recovered | Footer


# --------------------------------------------------------------------------- codecs

encode = msgspec.json.Encoder().encode
request_decoder: Final[msgspec.json.Decoder[Request]] = msgspec.json.Decoder(Request)
envelope_decoder: Final = msgspec.json.Decoder(Envelope)
reply_decoder: Final[msgspec.json.Decoder[Reply]] = msgspec.json.Decoder(Reply)
event_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
record_decoder: Final[msgspec.json.Decoder[Record]] = msgspec.json.Decoder(Record)
chunk_decoder: Final[msgspec.json.Decoder[AnyChunk]] = msgspec.json.Decoder(AnyChunk)
