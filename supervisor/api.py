"""The one front door: every control request, whoever sends it and however it came in,
is checked against the caller's role and carried out here.

A transport (``control.ControlServer`` for ipc today) only frames and decodes; it hands a
decoded :class:`Request` and the :class:`Caller` it vouches for to :meth:`Api.handle`, and
sends back the reply. So the rules — who may do what, replay's limits, the error table —
live in one place whichever transport is added next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, assert_never

import anyio
import msgspec
import structlog

from agentplex.protocol import (
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
    ReloadPersonas,
    Replay,
    Replayed,
    Reply,
    Request,
    Role,
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
)
from agentplex.protocol import requests as panel_requests
from agentplex.protocol.errors import AgentplexError, Forbidden, InternalError, InvalidArgument
from agentplex.supervisor import request_context
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.panels.api import PanelApi
from agentplex.supervisor.retention import without_purged

log = structlog.get_logger(__name__)

MAX_REPLAY_PAGE: Final = 50_000
"""Most chunks one ``replay`` reply carries, whatever ``limit`` asks; a page is also
bounded in bytes (``Config.replay_page_bytes``)."""
REPLAYS_AT_ONCE: Final = 4
"""Replay pages being read and sent at once. Each holds up to a page in memory (twice,
while it is encoded): without a bound, 256 requests in flight reading from disk would
hold 256 pages. Others wait their turn (a page from disk takes milliseconds)."""


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who sends a request, as the transport that received it vouches."""

    transport: str
    """How the request came: "ipc" today ("tcp", "inproc" later)."""
    identity: str
    """Who it is on that transport (for ipc: the hex of the ZeroMQ routing id)."""
    role: Role

    def __str__(self) -> str:
        return f"{self.transport}:{self.identity} ({self.role})"


REQUIRED_ROLE: Final[Mapping[type[Request], Role]] = MappingProxyType(
    {
        # Looking: nothing a session does changes, so any caller may.
        ListSessions: Role.OBSERVER,
        Inspect: Role.OBSERVER,
        Replay: Role.OBSERVER,
        ListPersonas: Role.OBSERVER,
        ListBackends: Role.OBSERVER,
        # sync only publishes the caller's token on the events socket (to learn that a
        # subscription is live); every observer needs it to read events reliably.
        Sync: Role.OBSERVER,
        Ping: Role.OBSERVER,
        # Driving sessions. None is admin-only yet: admin is kept for managing the daemon
        # itself (config, roles, shutdown) once such requests exist. Note that start with
        # the exec backend runs any command as the daemon's user, and permit lets an agent
        # use a tool: an operator is trusted to run code, so grant it only to people who
        # could run it anyway.
        Start: Role.OPERATOR,
        Send: Role.OPERATOR,
        Interrupt: Role.OPERATOR,
        Terminate: Role.OPERATOR,
        Switch: Role.OPERATOR,  # changes the active session every other client follows
        Permit: Role.OPERATOR,
        # Managing the daemon itself: its persona templates are its configuration.
        ReloadPersonas: Role.ADMIN,
        # Panels: reading them is looking; the rest drives member sessions.
        panel_requests.PanelList: Role.OBSERVER,
        panel_requests.PanelShow: Role.OBSERVER,
        panel_requests.PanelReport: Role.OBSERVER,
        panel_requests.PanelCreate: Role.OPERATOR,
        panel_requests.PanelSay: Role.OPERATOR,
        panel_requests.PanelReact: Role.OPERATOR,
        panel_requests.PanelDecide: Role.OPERATOR,
        panel_requests.PanelControl: Role.OPERATOR,
        panel_requests.PanelNext: Role.OPERATOR,
    }
)
"""The least role allowed each request type. A type missing here is refused to everyone
(and a test fails), so a new request cannot slip through unchecked."""


def request_type(request: Request) -> str:
    """The wire name of a request's type (its tag), e.g. ``"start"``."""
    return str(type(request).__struct_config__.tag)


class Api:
    """Carries out control requests against the session manager; never raises."""

    def __init__(
        self,
        manager: SessionManager,
        daemon_info: Callable[[], DaemonInfo],
        panels: PanelApi | None = None,
    ) -> None:
        self._manager = manager
        self._daemon_info = daemon_info
        self._panels = panels
        self._replaying = anyio.Semaphore(REPLAYS_AT_ONCE)

    async def handle(self, request: Request, caller: Caller) -> Reply:
        """The reply to ``request`` from ``caller``: its result, or an ``Error`` reply.

        Every log line the request causes (in this task) carries its id, type and caller.
        """
        with request_context.serving(request.id, request_type(request), str(caller)):
            try:
                authorize(request, caller)
                return await self._dispatch(request)
            except AgentplexError as exc:
                if isinstance(exc, Forbidden):
                    log.warning("request_forbidden", reason=exc.message)
                return Error(id=request.id, code=exc.code, message=exc.message)
            except Exception as exc:  # the daemon must outlive any bug in one request
                log.exception("request_failed")
                error = InternalError(f"internal error: {exc!r} (see the daemon's log)")
                return Error(id=request.id, code=error.code, message=error.message)

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
            case ListSessions(all=everything):
                sessions, active = manager.registry.snapshot(evicted=everything)
                sessions = await anyio.to_thread.run_sync(without_purged, sessions)
                return Sessions(id=rid, sessions=sessions, active=active)
            case Inspect(session=ref):
                return Described(id=rid, session=manager.registry.get(ref).info())
            case Switch(session=ref):
                return Switched(id=rid, session_id=manager.switch(ref).id)
            case Permit(session=ref, allow=allow, request_id=pending):
                session, answered = manager.permit(ref, allow, pending)
                return Permitted(id=rid, session_id=session.id, request_id=answered)
            case Replay():
                return await self._replay(request)
            case ListPersonas():
                return self._personas(rid)
            case ReloadPersonas():
                changed = manager.personas.reload()
                log.info("personas_reloaded", changes=changed)
                return self._personas(rid, changed)
            case ListBackends():
                # describe() runs each CLI's --version: never on the event loop
                infos = await anyio.to_thread.run_sync(
                    manager.backends.describe, manager.context.config
                )
                return Backends(id=rid, backends=infos)
            case Sync(token=token):
                manager.context.events.sync(token)
                return Synced(id=rid, token=token)
            case Ping():
                return Pong(id=rid, daemon=self._daemon_info())
            case panel_requests.PanelRequest():
                if self._panels is None:
                    raise InvalidArgument("this daemon runs no panels")
                return await self._panels.handle(request)
            case _:  # mypy proves this unreachable: a new request type must be handled
                assert_never(request)

    async def _replay(self, request: Replay) -> Replayed:
        session = self._manager.registry.get(request.session)
        # Read before the chunks: a chunk published meanwhile may be in the page, but
        # ``ended`` is never claimed for a stream that could still grow past ``last_seq``.
        last_seq, ended = session.chunks.seq, session.finished_streaming
        limit = max(1, min(request.limit, MAX_REPLAY_PAGE))
        page_bytes = self._manager.context.config.replay_page_bytes
        # Held until the page is returned; the transport then encodes and sends it without
        # yielding (ROUTER sends never wait), so at most this many pages exist at once.
        async with self._replaying:
            if session.status.ended:  # its transcript may have been purged
                await anyio.to_thread.run_sync(session.chunks.history.require_transcript)
            found = await session.chunks.replay(max(request.from_seq, 1), limit, page_bytes)
        return Replayed(
            id=request.id,
            session_id=session.id,
            chunks=[msgspec.Raw(line) for line in found],  # already encoded: sent as is
            last_seq=last_seq,
            ended=ended,
        )

    def _personas(self, rid: int, changes: list[str] | None = None) -> Personas:
        personas = self._manager.personas
        problems = [str(problem) for problem in personas.problems]
        return Personas(
            id=rid, personas=personas.describe(), problems=problems, changes=changes or []
        )


def authorize(request: Request, caller: Caller) -> None:
    """Raise :class:`Forbidden` unless ``caller``'s role allows ``request``."""
    kind = request_type(request)
    needed = REQUIRED_ROLE.get(type(request))
    if needed is None:  # a request type someone forgot to put in the table
        raise Forbidden(f"{kind!r} requests are not allowed to anyone (no role is set for them)")
    if not caller.role.allows(needed):
        raise Forbidden(
            f"{kind!r} needs the {needed} role; {caller.transport} caller "
            f"{caller.identity} has {caller.role}"
        )
