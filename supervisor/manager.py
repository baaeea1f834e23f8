"""SessionManager: carries out the session requests against the registries."""

from __future__ import annotations

import anyio
from anyio.abc import TaskGroup

from agentplex.plugins.api import Backend
from agentplex.protocol import Start
from agentplex.protocol.errors import (
    BackendUnavailable,
    InvalidArgument,
    SpawnFailed,
    TooManySessions,
)
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.factory import SessionFactory
from agentplex.supervisor.personas import Persona, PersonaRegistry
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.session import Session
from agentplex.supervisor.validation import require_text, validate_name

DEFAULT_BACKEND = "demo"


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
        self._tg = task_group

    async def start(self, request: Start) -> Session:
        """Validate a start request, then create, register and begin the session."""
        validate_name("persona", request.persona)
        persona = self.personas.get(request.persona) if request.persona else None
        backend = self.backends.get(request.backend or _persona_backend(persona))
        spec, prompt = self.factory.spec(request, backend, persona)
        self._check_capacity(backend)
        argv_preview = backend.argv(spec, prompt, None)
        if not argv_preview:
            raise InvalidArgument(f"backend {backend.id!r} needs a command (give it after --)")
        session = self.factory.new(
            spec, backend, tag=request.tag, persona=persona, argv=argv_preview
        )
        self.registry.register(session)
        await self._tg.start(session.run)
        self.context.events.created(session.info())
        self.context.events.active_changed(session.id)
        try:
            session.begin(prompt)
        except SpawnFailed as exc:
            session.fail(exc.message)
            raise
        finally:
            self.context.table.save_now(session)
        return session

    def _check_capacity(self, backend: Backend) -> None:
        limit = self.context.config.max_sessions
        if len(self.registry.live()) >= limit:
            raise TooManySessions(f"{limit} sessions are already running (max_sessions)")
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
        return session, session.send(message)

    def interrupt(self, ref: str | None) -> Session:
        session = self.registry.get(ref)
        session.interrupt()
        return session

    def permit(self, ref: str | None, allow: bool, request_id: str | None) -> tuple[Session, str]:
        session = self.registry.get(ref)
        return session, session.permit(allow, request_id)

    async def terminate(self, ref: str | None, grace: float | None) -> tuple[Session, bool]:
        session = self.registry.get(ref)
        grace = self.context.config.terminate_grace if grace is None else max(grace, 0.0)
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
            for session in self.registry.live():
                tg.start_soon(session.terminate, grace, "daemon shutting down")


def _persona_backend(persona: Persona | None) -> str:
    return (persona.backend if persona else None) or DEFAULT_BACKEND
