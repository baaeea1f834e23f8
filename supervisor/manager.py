"""SessionManager: carries out the session requests against the registries."""

from __future__ import annotations

import os
import uuid

import anyio
from anyio.abc import TaskGroup

from agentplex.client.errors import (
    BackendUnavailable,
    EmptyPrompt,
    InvalidArgument,
    SpawnFailed,
    TooManySessions,
)
from agentplex.client.protocol import Header, Start
from agentplex.plugins.api import Backend, BackendMode, SessionSpec
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.process_group import SESSION_MARKER
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.session import Session, SessionContext
from agentplex.supervisor.transcript import Transcript
from agentplex.supervisor.validation import (
    build_environment,
    require_text,
    resolve_cwd,
    validate_env,
    validate_name,
)


class SessionManager:
    """Starts, feeds, interrupts and ends sessions; every session task lives in ``tg``."""

    def __init__(
        self,
        *,
        context: SessionContext,
        backends: BackendRegistry,
        registry: SessionRegistry,
        task_group: TaskGroup,
    ) -> None:
        self.context = context
        self.backends = backends
        self.registry = registry
        self._tg = task_group

    async def start(self, request: Start) -> Session:
        """Validate a start request, then create, register and begin the session."""
        backend = self.backends.get(request.backend)
        spec, prompt = self._spec(request, backend)
        argv_preview = backend.argv(spec, prompt, None)
        if not argv_preview:
            raise InvalidArgument(f"backend {backend.id!r} needs a command (give it after --)")
        self._check_capacity(backend)
        session = self._create(request, backend, spec, argv_preview)
        await self._tg.start(session.run)
        self.context.events.created(session.info())
        self.context.events.active_changed(session.id)
        try:
            session.begin(prompt)
        except SpawnFailed as exc:
            session.fail(exc.message)
            raise
        return session

    def _spec(self, request: Start, backend: Backend) -> tuple[SessionSpec, str | None]:
        validate_name("tag", request.tag)
        persona = validate_name("persona", request.persona)
        cwd = resolve_cwd(request.cwd)
        env = validate_env(request.env)
        prompt = request.prompt
        if backend.mode is BackendMode.TURN:
            prompt = require_text("prompt", prompt)
        elif prompt is not None and not prompt.strip():
            raise EmptyPrompt("the prompt is empty (leave it out to start without one)")
        spec = SessionSpec(
            session_id=str(uuid.uuid4()),
            cwd=cwd,
            persona=persona,
            command=tuple(request.argv),
            env=env,
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
        self, request: Start, backend: Backend, spec: SessionSpec, argv: list[str]
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

    def send(self, ref: str | None, message: str) -> tuple[Session, int]:
        """Deliver a message to a session; returns it and its queue length."""
        require_text("message", message)
        session = self.registry.get(ref)
        return session, session.send(message)

    def interrupt(self, ref: str | None) -> Session:
        session = self.registry.get(ref)
        session.interrupt()
        return session

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
