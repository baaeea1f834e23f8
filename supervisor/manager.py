"""SessionManager: carries out the session requests against the registries."""

from __future__ import annotations

import os
import uuid

import anyio
from anyio.abc import TaskGroup

from agentplex.plugins.api import Backend, BackendMode, PermissionPolicy, SessionSpec
from agentplex.protocol import Header, Start
from agentplex.protocol.errors import (
    BackendUnavailable,
    EmptyPrompt,
    InvalidArgument,
    SpawnFailed,
    TooManySessions,
)
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.personas import Persona, PersonaRegistry
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.scanner import SESSION_MARKER
from agentplex.supervisor.session import Session, SessionContext
from agentplex.supervisor.transcript import Transcript
from agentplex.supervisor.validation import (
    build_environment,
    require_text,
    resolve_cwd,
    validate_env,
    validate_name,
)

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
        self._tg = task_group

    async def start(self, request: Start) -> Session:
        """Validate a start request, then create, register and begin the session."""
        validate_name("persona", request.persona)
        persona = self.personas.get(request.persona) if request.persona else None
        backend = self.backends.get(request.backend or _persona_backend(persona))
        spec, prompt = self._spec(request, backend, persona)
        self._check_capacity(backend)
        argv_preview = backend.argv(spec, prompt, None)
        if not argv_preview:
            raise InvalidArgument(f"backend {backend.id!r} needs a command (give it after --)")
        session = self._create(request, backend, spec, argv_preview, persona)
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

    def _spec(
        self, request: Start, backend: Backend, persona: Persona | None
    ) -> tuple[SessionSpec, str | None]:
        validate_name("tag", request.tag)
        mode = _mode(request.mode, backend)
        prompt = request.prompt
        if mode is BackendMode.TURN:
            prompt = require_text("prompt", prompt)
        elif prompt is not None and not prompt.strip():
            raise EmptyPrompt("the prompt is empty (leave it out to start without one)")
        spec = SessionSpec(
            session_id=str(uuid.uuid4()),
            cwd=resolve_cwd(request.cwd),
            mode=mode,
            persona=persona.name if persona else None,
            instructions=(persona.instructions.strip() or None) if persona else None,
            model=request.model or (persona.model if persona else None),
            allowed_tools=tuple(persona.allowed_tools) if persona else (),
            permission_policy=_policy(request.permission_policy, persona),
            command=tuple(request.argv),
            env=validate_env(request.env),
            scratch_dir=self.context.config.scratch_dir,
        )
        return spec, prompt

    def _check_capacity(self, backend: Backend) -> None:
        limit = self.context.config.max_sessions
        if len(self.registry.live()) >= limit:
            raise TooManySessions(f"{limit} sessions are already running (max_sessions)")
        found = backend.locate()
        if not found.available:
            raise BackendUnavailable(f"backend {backend.id!r} is not available: {found.problem}")

    def _create(
        self,
        request: Start,
        backend: Backend,
        spec: SessionSpec,
        argv: list[str],
        persona: Persona | None,
    ) -> Session:
        config = self.context.config
        env = build_environment(
            config.env_allowlist,
            os.environ,
            backend.environment(spec),
            spec.env,
            (SESSION_MARKER, spec.session_id),
        )
        transcript = Transcript.create(config.sessions_dir, request.tag, spec.session_id)
        session = Session(
            spec=spec,
            backend=backend,
            tag=request.tag,
            persona_icon=persona.icon if persona else None,
            env=env,
            transcript=transcript,
            context=self.context,
        )
        transcript.write(
            Header(
                session_id=session.id,
                backend=backend.id,
                persona=spec.persona,
                tag=request.tag,
                argv=argv,
                cwd=str(spec.cwd),
                started_at=session.created_at,
            )
        )
        self.registry.register(session)
        return session

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


def _mode(requested: BackendMode | None, backend: Backend) -> BackendMode:
    if requested is None:
        return backend.modes[0]
    if requested not in backend.modes:
        supported = ", ".join(m.value for m in backend.modes)
        raise InvalidArgument(f"backend {backend.id!r} runs only in: {supported}")
    return requested


def _policy(requested: PermissionPolicy | None, persona: Persona | None) -> PermissionPolicy:
    if requested is not None:
        return requested
    return persona.permission_policy if persona else PermissionPolicy.ASK
