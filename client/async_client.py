"""AsyncClient: the one implementation of the client side of the protocol (anyio)."""

from __future__ import annotations

import builtins
import contextlib
import enum
import itertools
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import msgspec
import zmq
import zmq.asyncio
from anyio.abc import TaskGroup

from agentplex import protocol as p
from agentplex.client.follow import follow
from agentplex.client.panels import PanelMethods
from agentplex.client.runtime_dir import check_daemon_running as check_daemon_running
from agentplex.client.subscription import Subscription
from agentplex.protocol.errors import (
    AgentplexError,
    BadReply,
    FrameTooLarge,
    InvalidArgument,
    RequestTimeout,
    error_from_code,
)
from agentplex.protocol.paths import RuntimePaths, default_runtime_dir

R = TypeVar("R", bound=p.Reply)

DEFAULT_TIMEOUT = 10.0
SYNC_RETRY = 0.05
SUB_HIGH_WATER_MARK = 100_000

_E = TypeVar("_E", bound=enum.StrEnum)


class AsyncClient(PanelMethods):
    """Talks to one daemon. Use as ``async with AsyncClient() as client: ...``.

    Requests may run concurrently; each waits for the reply with its own id and raises
    the named exception for an error reply. ``timeout`` is the default per request.
    """

    def __init__(
        self,
        runtime_dir: Path | str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        receive_hwm: int = SUB_HIGH_WATER_MARK,
    ) -> None:
        self.paths = RuntimePaths(Path(runtime_dir) if runtime_dir else default_runtime_dir())
        self.timeout = timeout
        self.receive_hwm = receive_hwm
        """Events a subscription buffers before ZeroMQ drops more (follow() refills them)."""
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> AsyncClient:
        check_daemon_running(self.paths)
        self._ctx = zmq.asyncio.Context()
        self._dealer = self._ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.connect(self.paths.control_endpoint)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._receive_replies)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None and self._ctx is not None and self._dealer is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(et, e, tb)
        finally:
            # destroy, not term: term() blocks until every socket is closed, and a
            # subscription whose task was cancelled mid-receive (Ctrl-C in a follow) may
            # still hold one open; destroy closes them here, on the loop that owns them.
            self._ctx.destroy(linger=0)

    # ------------------------------------------------------------------ requests

    async def start(
        self,
        backend: str | None = None,
        prompt: str | None = None,
        *,
        persona: str | None = None,
        mode: str | p.BackendMode | None = None,
        model: str | None = None,
        permission_policy: str | p.PermissionPolicy | None = None,
        tag: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] = (),
        keep_children: bool = False,
        timeout: float | None = None,
    ) -> p.SessionInfo:
        """Start a session; returns its info (status ``running`` once its process runs).

        ``keep_children``: what the agent leaves running when its process exits runs on
        (a terminate and the daemon's shutdown still end it).

        No ``backend``: the persona's default backend, else ``demo``.
        """
        request = p.Start(
            backend=backend,
            prompt=prompt,
            persona=persona,
            mode=_member(p.BackendMode, mode, "mode"),
            model=model,
            permission_policy=_member(p.PermissionPolicy, permission_policy, "permission policy"),
            tag=tag,
            cwd=os.fspath(cwd) if cwd is not None else None,
            env=dict(env or {}),
            argv=list(argv),
            keep_children=keep_children,
        )
        return (await self.request(request, p.Started, timeout)).session

    async def send(
        self, message: str, session: str | None = None, *, timeout: float | None = None
    ) -> p.Sent:
        """Send a message to a session (None: the active one)."""
        return await self.request(p.Send(message=message, session=session), p.Sent, timeout)

    async def interrupt(self, session: str | None = None, *, timeout: float | None = None) -> str:
        """Interrupt a session's running turn; returns the session id."""
        reply = await self.request(p.Interrupt(session=session), p.Interrupted, timeout)
        return reply.session_id

    async def terminate(
        self,
        session: str | None = None,
        *,
        grace: float | None = None,
        timeout: float | None = None,
    ) -> p.Terminated:
        """End a session and its whole process tree; returns once nothing of it runs."""
        wait = timeout if timeout is not None else self.timeout + (grace or 0) + 10
        return await self.request(p.Terminate(session=session, grace=grace), p.Terminated, wait)

    async def permit(
        self,
        allow: bool,
        session: str | None = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> p.Permitted:
        """Allow or deny the tool use a session in ``waiting_input`` asked about."""
        request = p.Permit(allow=allow, session=session, request_id=request_id)
        return await self.request(request, p.Permitted, timeout)

    async def personas(self, *, reload: bool = False, timeout: float | None = None) -> p.Personas:
        """Every persona template, and the problems of the template files; with ``reload``,
        the daemon reads the templates again first (``changes`` says what changed)."""
        request: p.Request = p.ReloadPersonas() if reload else p.ListPersonas()
        return await self.request(request, p.Personas, timeout)

    async def list(self, *, all: bool = False, timeout: float | None = None) -> p.Sessions:
        """The sessions the daemon holds (live, and ended less than its ``keep_ended`` ago)
        and the active one; with ``all``, also every older session it has a record of."""
        return await self.request(p.ListSessions(all=all), p.Sessions, timeout)

    async def inspect(
        self, session: str | None = None, *, timeout: float | None = None
    ) -> p.SessionInfo:
        """One session's info (an id or unique prefix; None: the active session)."""
        return (await self.request(p.Inspect(session=session), p.Described, timeout)).session

    def follow(self, session: str, from_seq: int = 1) -> AsyncGenerator[p.Chunk, None]:
        """Every chunk of a session from ``from_seq`` on, exactly once and in seq order,
        live until the session ends; survives a slow consumer and a daemon restart."""
        return follow(self, session, from_seq)

    async def replay(
        self, session: str, from_seq: int = 1, *, limit: int = 10_000, timeout: float | None = None
    ) -> p.Replayed:
        """One page of a session's chunks from ``from_seq`` (see ``follow``)."""
        request = p.Replay(session=session, from_seq=from_seq, limit=limit)
        return await self.request(request, p.Replayed, timeout)

    async def switch(self, session: str, *, timeout: float | None = None) -> str:
        """Make a session the active one; returns its full id."""
        return (await self.request(p.Switch(session=session), p.Switched, timeout)).session_id

    async def backends(self, *, timeout: float | None = None) -> builtins.list[p.BackendInfo]:
        """Every backend plugin, whether its CLI was found, and its version."""
        return (await self.request(p.ListBackends(), p.Backends, timeout)).backends

    async def ping(self, *, timeout: float | None = None) -> p.DaemonInfo:
        """Who the daemon is."""
        return (await self.request(p.Ping(), p.Pong, timeout)).daemon

    async def request(self, request: p.Request, expect: type[R], timeout: float | None) -> R:
        """Send any request and return its reply, raising the error an error reply names."""
        assert self._dealer is not None, "use the client inside 'async with'"
        request_id = next(self._ids)
        frame = encode_request(msgspec.structs.replace(request, id=request_id))
        waiter = _Waiter()
        self._waiting[request_id] = waiter
        try:
            await self._dealer.send(frame)
            limit = self.timeout if timeout is None else timeout
            with anyio.fail_after(limit):
                await waiter.event.wait()
        except TimeoutError:
            raise RequestTimeout(
                f"the daemon did not answer a '{type(request).__struct_config__.tag}' request "
                f"within {limit:g} s: it may be stopped or very busy; allow it longer with a "
                "larger timeout (agentplex --timeout SECONDS)"
            ) from None
        finally:
            self._waiting.pop(request_id, None)
        reply = waiter.reply
        if isinstance(reply, BadReply):
            raise reply
        if isinstance(reply, p.Error):
            raise error_from_code(reply.code, reply.message)
        if not isinstance(reply, expect):
            raise AgentplexError(f"unexpected reply {type(reply).__name__} to {request!r}")
        return reply

    async def _receive_replies(self) -> None:
        """Hand each reply to its waiter. Runs in the client's own task group, which
        shares the caller's cancellation: an exception escaping here would cancel the
        caller's tasks, so a frame that cannot be read never raises out of this loop."""
        assert self._dealer is not None
        while True:
            request_id, reply = _decode_reply(await self._dealer.recv())
            waiter = self._waiting.get(request_id) if request_id is not None else None
            if waiter is None:
                continue  # nobody waits (timed out, or even the id is unreadable): drop it
            waiter.reply = reply
            waiter.event.set()

    # ------------------------------------------------------------------ events

    @asynccontextmanager
    async def subscribe(
        self,
        *prefixes: str | bytes,
        ready_timeout: float | None = None,
        expand_batches: bool = True,
    ) -> AsyncIterator[Subscription]:
        """A live subscription to events whose topic starts with one of ``prefixes``.

        Entered only once the subscription is live (ZeroMQ subscriptions take effect
        asynchronously), so no event published after entry is missed unless the
        subscriber falls behind the daemon's high-water mark. No prefix: every event.
        ``ready_timeout`` (default: the client's timeout) is how long to keep trying,
        e.g. while a daemon restarts. ``expand_batches``: see :class:`Subscription`.
        """
        assert self._ctx is not None, "use the client inside 'async with'"
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, self.receive_hwm)
        token = secrets.token_hex(8)
        sync_topic = p.topic_of(p.SyncMark(token=token))
        for prefix in prefixes or (b"",):
            sub.setsockopt(zmq.SUBSCRIBE, prefix.encode() if isinstance(prefix, str) else prefix)
        sub.setsockopt(zmq.SUBSCRIBE, sync_topic)
        sub.connect(self.paths.events_endpoint)
        try:
            early = await self._wait_subscribed(sub, token, ready_timeout or self.timeout)
            yield Subscription(sub, early, sync_topic, expand_batches=expand_batches)
        finally:
            sub.close()

    async def _wait_subscribed(
        self, sub: zmq.asyncio.Socket, token: str, timeout: float
    ) -> builtins.list[p.Event]:
        """Ask for sync marks until one arrives; return the events that came before it."""
        early: builtins.list[p.Event] = []
        with anyio.fail_after(timeout):
            while True:
                with contextlib.suppress(RequestTimeout):  # the daemon may be restarting
                    await self.request(p.Sync(token=token), p.Synced, min(timeout, 2.0))
                with anyio.move_on_after(SYNC_RETRY):
                    while True:
                        _topic, payload = await sub.recv_multipart()
                        event = p.event_decoder.decode(payload)
                        if isinstance(event, p.SyncMark) and event.token == token:
                            return early
                        if not isinstance(event, p.SyncMark):
                            early.append(event)


def encode_request(request: p.Request) -> bytes:
    """The request's control frame, or FrameTooLarge if the daemon would refuse it: refused
    here, before sending, so the caller learns at once (and nothing big crosses the socket)."""
    frame = p.encode(request)
    if len(frame) > p.MAX_FRAME_BYTES:
        raise FrameTooLarge(
            f"the {type(request).__name__.lower()} request is {len(frame)} bytes, over the "
            f"{p.MAX_FRAME_BYTES} bytes a control frame may carry"
        )
    return frame


class _Waiter:
    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: p.Reply | BadReply | None = None


def _decode_reply(frame: bytes) -> tuple[int | None, p.Reply | BadReply]:
    """The request id a frame answers, and the reply, or BadReply if it does not decode."""
    try:
        reply = p.reply_decoder.decode(frame)
    except (msgspec.DecodeError, ValueError) as exc:
        bad = BadReply(f"the daemon sent a reply that cannot be decoded: {exc}")
        return _readable_id(frame), bad
    return reply.id, reply


def _readable_id(frame: bytes) -> int | None:
    """The request id of a reply that does not decode, if that much can be read."""
    try:
        return p.envelope_decoder.decode(frame).request_id
    except (msgspec.DecodeError, ValueError):
        return None


def _member(kind: type[_E], value: str | None, what: str) -> _E | None:
    """``value`` as a member of ``kind``, or InvalidArgument naming the choices."""
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidArgument(f"unknown {what} {value!r} ({choices})") from None
