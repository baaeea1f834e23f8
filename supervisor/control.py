"""The ROUTER side: decode each control frame, hand it to the Api, answer by id."""

from __future__ import annotations

import anyio
import msgspec
import structlog
import zmq
import zmq.asyncio
from anyio.abc import TaskStatus

from agentplex.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Error,
    Reply,
    Request,
    Role,
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
from agentplex.supervisor.api import Api, Caller
from agentplex.supervisor.outbox import Outbox

log = structlog.get_logger(__name__)

_REQUEST_TYPES = frozenset(t.__struct_config__.tag for t in Request.__args__)

MAX_IN_FLIGHT = 256
"""Requests answered at once. Past this the loop stops reading, so further frames wait in
ZeroMQ's queue (whose high-water mark then pushes back on the clients) instead of each
becoming a task: a flood of slow requests (terminates, replays from disk) cannot grow the
daemon's memory without bound. Far above what local clients send at once."""


class ControlServer:
    """Frames and decodes control requests for :class:`Api`; one slow request (a
    terminate) never holds up others."""

    def __init__(
        self, socket: zmq.asyncio.Socket, api: Api, *, waiting_bytes: int = 64 << 20
    ) -> None:
        self._socket = socket
        self._api = api
        self._waiting_bytes = waiting_bytes
        """Bytes of replies that may wait for clients whose queues are full (outbox.py)."""
        self._outbox: Outbox | None = None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive requests until cancelled, each answered in its own task."""
        # A Semaphore, not a CapacityLimiter: a slot is taken by this loop and given back
        # by the request's task, and a CapacityLimiter's token belongs to one task.
        slots = anyio.Semaphore(MAX_IN_FLIGHT)
        async with anyio.create_task_group() as tg:
            self._outbox = Outbox(self._socket, tg, self._waiting_bytes)
            task_status.started()
            while True:
                await _take(slots)  # before reading: past the bound, frames stay queued
                frames = await self._socket.recv_multipart()
                tg.start_soon(self._answer, frames, slots)

    async def _answer(self, frames: list[bytes], slots: anyio.Semaphore) -> None:
        try:
            identity, body = frames[0], frames[1:]
            reply = await self.handle(body, ipc_caller(identity))
            assert self._outbox is not None
            await self._outbox.send(identity, encode(reply))
        finally:
            slots.release()

    async def handle(self, body: list[bytes], caller: Caller) -> Reply:
        """The reply to one request's frames; never raises."""
        try:
            request = decode_request(body)
        except _Undecodable as exc:
            error = exc.error
            return Error(id=exc.request_id, code=error.code, message=error.message)
        except Exception as exc:  # a bug in decoding must not end the daemon either
            log.exception("request_undecodable")
            internal = InternalError(f"internal error: {exc!r} (see the daemon's log)")
            return Error(id=0, code=internal.code, message=internal.message)
        return await self._api.handle(request, caller)


async def _take(slots: anyio.Semaphore) -> None:
    """Take a slot, yielding to the loop only when none is free.

    ``Semaphore.acquire`` always yields; this loop must not while frames are queued: the
    requests read in one pass run in one pass, which is what lets a burst of terminates
    share one /proc scan (``scanner.py``). Yielding per request made terminating 100
    sessions 3x slower.
    """
    try:
        slots.acquire_nowait()
    except anyio.WouldBlock:
        await slots.acquire()


def ipc_caller(identity: bytes) -> Caller:
    """An ipc caller: the socket lives in the owner's 0700 runtime dir, so whoever can
    connect is the daemon's owner, and may do everything."""
    return Caller(transport="ipc", identity=identity.hex(), role=Role.ADMIN)


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
        too_large = FrameTooLarge(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
        raise _Undecodable(too_large, _readable_request_id(frame))
    try:
        request = request_decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise _explain(frame, exc) from None
    if request.v != PROTOCOL_VERSION:
        raise _Undecodable(_unsupported(request.v), request.id)
    return request


def _readable_request_id(frame: bytes) -> int:
    """The id of a request too large to take, if it can be read (else 0), so the error
    reaches the request's waiter instead of leaving it to time out. Reading it costs one
    scan of the frame, which ZeroMQ already bounds (``MAX_ZMQ_MESSAGE``)."""
    try:
        return envelope_decoder.decode(frame).request_id or 0
    except msgspec.DecodeError:
        return 0


def _unsupported(version: object) -> UnsupportedVersion:
    return UnsupportedVersion(
        f"protocol version {version!r} is not supported (this daemon speaks {PROTOCOL_VERSION})"
    )


def _explain(frame: bytes, exc: msgspec.DecodeError) -> _Undecodable:
    try:
        envelope = envelope_decoder.decode(frame)
    except msgspec.DecodeError:
        return _Undecodable(BadRequest(f"not a JSON request object: {exc}"), 0)
    request_id = envelope.request_id or 0
    if envelope.v is not None and envelope.v != PROTOCOL_VERSION:
        error: AgentplexError = _unsupported(envelope.v)
    elif envelope.type is not None and envelope.type not in _REQUEST_TYPES:
        error = UnknownRequestType(f"unknown request type {envelope.type!r}")
    else:
        error = BadRequest(f"invalid request: {exc}")
    return _Undecodable(error, request_id)
