"""The ROUTER side: decode each control frame, carry the request out, answer by id."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import msgspec
import structlog
import zmq
import zmq.asyncio
from anyio.abc import TaskStatus

from agentplex.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Backends,
    DaemonInfo,
    Described,
    Error,
    Inspect,
    Interrupt,
    Interrupted,
    ListBackends,
    ListPersonas,
    ListSessions,
    Permit,
    Permitted,
    Personas,
    Ping,
    Pong,
    Replay,
    Replayed,
    Reply,
    Request,
    Send,
    Sent,
    Sessions,
    Start,
    Started,
    Switch,
    Switched,
    Sync,
    Synced,
    Terminate,
    Terminated,
    encode,
    envelope_decoder,
    request_decoder,
)
from agentplex.protocol.errors import (
    AgentplexError,
    BadRequest,
    FrameTooLarge,
    InternalError,
    UnknownRequestType,
    UnsupportedVersion,
)
from agentplex.supervisor.manager import SessionManager

log = structlog.get_logger(__name__)

_REQUEST_TYPES = frozenset(t.__struct_config__.tag for t in Request.__args__)


class ControlServer:
    """Answers control requests; one slow request (a terminate) never holds up others."""

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        manager: SessionManager,
        daemon_info: Callable[[], DaemonInfo],
    ) -> None:
        self._socket = socket
        self._manager = manager
        self._daemon_info = daemon_info

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive requests until cancelled, each answered in its own task."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                frames = await self._socket.recv_multipart()
                tg.start_soon(self._answer, frames)

    async def _answer(self, frames: list[bytes]) -> None:
        identity, body = frames[0], frames[1:]
        reply = await self.handle(body)
        await self._socket.send_multipart([identity, encode(reply)])

    async def handle(self, body: list[bytes]) -> Reply:
        """The reply to one request's frames; never raises."""
        request_id = 0
        try:
            request = decode_request(body)
            request_id = request.id
            return await self._dispatch(request)
        except AgentplexError as exc:
            if isinstance(exc, _Undecodable):
                request_id = exc.request_id
                exc = exc.error
            return Error(id=request_id, code=exc.code, message=exc.message)
        except Exception as exc:  # the daemon must outlive any bug in one request
            log.exception("request_failed", request_id=request_id)
            error = InternalError(f"internal error: {exc!r} (see the daemon's log)")
            return Error(id=request_id, code=error.code, message=error.message)

    async def _dispatch(self, request: Request) -> Reply:
        manager, rid = self._manager, request.id
        match request:
            case Start():
                session = await manager.start(request)
                return Started(id=rid, session=session.info())
            case Send(session=ref, message=message):
                session, queued = manager.send(ref, message)
                return Sent(id=rid, session_id=session.id, queued=queued)
            case Interrupt(session=ref):
                return Interrupted(id=rid, session_id=manager.interrupt(ref).id)
            case Terminate(session=ref, grace=grace):
                session, escalated = await manager.terminate(ref, grace)
                return Terminated(id=rid, session=session.info(), escalated=escalated)
            case ListSessions():
                sessions, active = manager.registry.snapshot()
                return Sessions(id=rid, sessions=sessions, active=active)
            case Inspect(session=ref):
                return Described(id=rid, session=manager.registry.get(ref).info())
            case Switch(session=ref):
                return Switched(id=rid, session_id=manager.switch(ref).id)
            case Permit(session=ref, allow=allow, request_id=request_id):
                session, answered = manager.permit(ref, allow, request_id)
                return Permitted(id=rid, session_id=session.id, request_id=answered)
            case Replay(session=ref, from_seq=from_seq, limit=limit):
                session = manager.registry.get(ref)
                last_seq, ended = session.chunks.seq, session.finished_streaming
                found = await session.chunks.replay(max(from_seq, 1), max(1, min(limit, 50_000)))
                return Replayed(
                    id=rid,
                    session_id=session.id,
                    chunks=[msgspec.Raw(line) for line in found],
                    last_seq=last_seq,
                    ended=ended,
                )
            case ListPersonas():
                problems = [str(problem) for problem in manager.personas.problems]
                return Personas(id=rid, personas=manager.personas.describe(), problems=problems)
            case ListBackends():
                infos = await anyio.to_thread.run_sync(manager.backends.describe)
                return Backends(id=rid, backends=infos)
            case Sync(token=token):
                manager.context.events.sync(token)
                return Synced(id=rid, token=token)
            case Ping():
                return Pong(id=rid, daemon=self._daemon_info())


class _Undecodable(AgentplexError):
    """Carries a decoding error together with the request id it could still read."""

    def __init__(self, error: AgentplexError, request_id: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def decode_request(body: list[bytes]) -> Request:
    """Decode one control message, or raise the error that says exactly what is wrong."""
    if len(body) != 1:
        raise _Undecodable(BadRequest(f"expected 1 frame, got {len(body)}"), 0)
    frame = body[0]
    if len(frame) > MAX_FRAME_BYTES:
        raise _Undecodable(
            FrameTooLarge(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}"), 0
        )
    try:
        request = request_decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise _explain(frame, exc) from None
    if request.v != PROTOCOL_VERSION:
        raise _Undecodable(_unsupported(request.v), request.id)
    return request


def _unsupported(version: object) -> UnsupportedVersion:
    return UnsupportedVersion(
        f"protocol version {version!r} is not supported (this daemon speaks {PROTOCOL_VERSION})"
    )


def _explain(frame: bytes, exc: msgspec.DecodeError) -> _Undecodable:
    try:
        envelope = envelope_decoder.decode(frame)
    except msgspec.DecodeError:
        return _Undecodable(BadRequest(f"not a JSON request object: {exc}"), 0)
    request_id = envelope.id if type(envelope.id) is int else 0  # bool is an int too
    if envelope.v is not None and envelope.v != PROTOCOL_VERSION:
        error: AgentplexError = _unsupported(envelope.v)
    elif envelope.type is not None and envelope.type not in _REQUEST_TYPES:
        error = UnknownRequestType(f"unknown request type {envelope.type!r}")
    else:
        error = BadRequest(f"invalid request: {exc}")
    return _Undecodable(error, request_id)
