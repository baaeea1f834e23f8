"""SessionManager: carries out the session requests against the registries."""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

import anyio
import structlog
from anyio.abc import TaskGroup

from agentplex.plugins.api import Backend, SessionSpec
from agentplex.protocol import SessionStatus, Start
from agentplex.protocol.errors import (
    BackendUnavailable,
    InvalidArgument,
    SessionEnded,
    SpawnFailed,
    TooManySessions,
)
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.command_line import start_argv
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.eviction import TableArchive
from agentplex.supervisor.factory import SessionFactory
from agentplex.supervisor.personas import Persona, PersonaRegistry
from agentplex.supervisor.process_group import kill_everything
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.session import Session
from agentplex.supervisor.validation import require_text, validate_name

DEFAULT_BACKEND = "demo"

log = structlog.get_logger(__name__)


class SessionManager:
    """Starts, feeds, interrupts and ends sessions; every session task lives in ``tg``."""

    def __init__(
        self,
        *,
        context: SessionContext,
        backends: BackendRegistry,
        personas: PersonaRegistry,
        registry: SessionRegistry,
        task_group: TaskGroup,
    ) -> None:
        self.context = context
        self.backends = backends
        self.personas = personas
        self.registry = registry
        self.factory = SessionFactory(context)
        # Sessions evicted from memory are found again through their table records.
        registry.archive = TableArchive(context.table, self.factory, backends)
        registry.on_active_changed = context.events.active_changed
        self._tg = task_group

    async def start(self, request: Start) -> Session:
        """Validate a start request, then create, register and begin the session."""
        validate_name("persona", request.persona)
        persona = self.personas.get(request.persona) if request.persona else None
        backend = self.backends.get(request.backend or _persona_backend(persona))
        spec, prompt = self.factory.spec(request, backend, persona)
        self._check_capacity(backend)
        argv_preview = _command_line(backend, spec, prompt)
        session = self.factory.new(
            spec, backend, tag=request.tag, persona=persona, argv=argv_preview
        )
        try:  # a program that cannot run fails the start: no failed session is left behind
            session.check_program(argv_preview[0])
        except SpawnFailed:
            session.transcript.discard()
            raise
        session.keep_children = request.keep_children
        self.registry.register(session)
        await self._tg.start(session.run)
        self.context.events.created(session.info())
        self.context.events.active_changed(session.id)
        try:
            session.begin(prompt)
        except SpawnFailed as exc:
            session.fail(exc.message)
            raise
        except SessionEnded:
            pass  # a terminate won the race with this start: nothing was spawned; say so
        finally:
            self.context.table.save_now(session)
        return session

    def _check_capacity(self, backend: Backend) -> None:
        limit = self.context.config.max_sessions
        live = self.registry.live()
        if len(live) >= limit:
            raise TooManySessions(f"{limit} sessions are already running (max_sessions)")
        # live() leaves out interrupted sessions: recovery parked their transcripts.
        self.context.fds.check_start(len(live))
        found = backend.locate()
        if not found.available:
            raise BackendUnavailable(f"backend {backend.id!r} is not available: {found.problem}")

    async def adopt(self, session: Session) -> None:
        """Run a session taken back after a restart under this manager's task group."""
        await self._tg.start(session.run)

    def send(self, ref: str | None, message: str) -> tuple[Session, int]:
        """Deliver a message to a session; returns it and its queue length."""
        require_text("message", message)
        session = self.registry.get(ref)
        if session.status is SessionStatus.INTERRUPTED and not session.finished_streaming:
            self._check_capacity(session.backend)  # its next turn runs: it counts again
        return session, session.send(message)

    def interrupt(self, ref: str | None) -> Session:
        session = self.registry.get(ref)
        session.interrupt()
        return session

    def permit(self, ref: str | None, allow: bool, request_id: str | None) -> tuple[Session, str]:
        session = self.registry.get(ref)
        return session, session.permit(allow, request_id)

    async def terminate(self, ref: str | None, grace: float | None) -> tuple[Session, bool]:
        if grace is not None and not (math.isfinite(grace) and grace >= 0):
            raise InvalidArgument(f"grace must be a finite number of seconds, 0 or more: {grace}")
        session = self.registry.get(ref)
        grace = self.context.config.terminate_grace if grace is None else grace
        escalated = await session.terminate(grace)
        return session, escalated

    def switch(self, ref: str) -> Session:
        session = self.registry.switch(ref)
        self.context.events.active_changed(session.id)
        return session

    async def shutdown(self) -> None:
        """Terminate every live session at once (the daemon is stopping)."""
        grace = self.context.config.terminate_grace
        async with anyio.create_task_group() as tg:
            for session in self.registry.unfinished():  # interrupted ones get their footers too
                tg.start_soon(_stop_for_shutdown, session, grace)
        await self.end_leftovers(grace)

    async def end_leftovers(self, grace: float) -> None:
        """End whatever the sessions left below the daemon (kept children, strays)."""
        context = self.context
        await kill_everything(grace, context.reaper, context.scanner)


async def _stop_for_shutdown(session: Session, grace: float) -> None:
    """Terminate a session as the daemon stops; one that cannot be stopped is logged and
    recorded as failed, and never keeps the others from their footers."""
    try:
        await session.terminate(grace, "daemon shutting down")
    except Exception as exc:  # whatever it was, the other sessions must still end
        log.exception("shutdown_terminate_failed", session_id=session.id)
        session.fail(f"daemon shutting down; stopping the session failed: {exc!r}")


def _command_line(backend: Backend, spec: SessionSpec, prompt: str | None) -> list[str]:
    """The command line the session starts with; InvalidArgument if the backend needs a
    command and got none, or got one (after ``--``) it would silently drop."""
    argv = backend.argv(spec, prompt, None)
    if not argv:
        raise InvalidArgument(f"backend {backend.id!r} needs a command (give it after --)")
    if spec.command and backend.argv(replace(spec, command=()), prompt, None) == argv:
        given = shlex.join(spec.command)
        raise InvalidArgument(
            f"backend {backend.id!r} takes no command after --, got: {given[:80]} "
            "(use -b exec to run a command, or -b acp for an ACP agent)"
        )
    return start_argv(backend, spec, prompt)  # a prompt argv cannot hold goes on stdin


def _persona_backend(persona: Persona | None) -> str:
    return (persona.backend if persona else None) or DEFAULT_BACKEND
