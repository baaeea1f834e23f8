"""SessionFactory: the one way a Session object is built, fresh or from its table record.

What an agent sees (its environment, and the spec its backend turns into a command line)
must not change when a restarted daemon takes its session back. So both ways of getting a
Session (a start request, a record of the durable table) end in :meth:`SessionFactory._build`,
the only place a session's environment is put together.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import msgspec
import structlog

from agentplex.plugins.api import Backend, BackendMode, PermissionPolicy, SessionSpec
from agentplex.protocol import Header, Start
from agentplex.protocol.errors import ConfigError, EmptyPrompt, InvalidArgument
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.credentials import (
    SecretStore,
    daemon_environment,
    session_environment,
    split_secrets,
)
from agentplex.supervisor.personas import Persona
from agentplex.supervisor.scanner import SESSION_MARKER
from agentplex.supervisor.session import Session
from agentplex.supervisor.table import SessionRecord
from agentplex.supervisor.transcript import Transcript
from agentplex.supervisor.validation import (
    require_text,
    resolve_cwd,
    validate_env,
    validate_name,
)

log = structlog.get_logger(__name__)


class SessionFactory:
    """Builds sessions for the daemon services in ``context``; registers none of them."""

    def __init__(self, context: SessionContext) -> None:
        self.context = context
        self.secrets = SecretStore(Path(context.config.runtime_dir))

    def spec(
        self, request: Start, backend: Backend, persona: Persona | None
    ) -> tuple[SessionSpec, str | None]:
        """Validate a start request; its session's spec, and the prompt to begin with.

        Kept apart from :meth:`new` so the caller can refuse the start (capacity, a backend
        that is missing or needs a command) before anything is written to disk.
        """
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
        return _held_policy(spec, backend, named=request.permission_policy is not None), prompt

    def new(
        self,
        spec: SessionSpec,
        backend: Backend,
        *,
        tag: str | None,
        persona: Persona | None,
        argv: list[str],
    ) -> Session:
        """A session starting now: a new transcript, opened by its header (``argv`` is the
        command line the header shows)."""
        transcript = Transcript.create(self.context.config.sessions_dir, tag, spec.session_id)
        try:
            session = self._build(
                spec, backend, tag, persona.icon if persona else None, transcript
            )
            # Secret --env values stay off the session table; this file lets a restarted
            # daemon continue the session with them.
            self.secrets.save(spec.session_id, split_secrets(spec.env)[1])
            transcript.write(
                Header(
                    session_id=session.id,
                    backend=backend.id,
                    persona=spec.persona,
                    tag=tag,
                    argv=argv,
                    cwd=str(spec.cwd),
                    started_at=session.created_at,
                )
            )
        except BaseException:
            # The start is refused (a full disk...) before the session exists anywhere
            # (registry, table, events): its transcript would be a headerless file that
            # nothing refers to, so it goes, and with it its descriptor.
            transcript.discard()
            raise
        return session

    def rebuild(self, record: SessionRecord, backend: Backend) -> Session:
        """The session a record of the durable table describes, its transcript reopened for
        appending (read-only once it has ended). Its state is restored by the caller."""
        info = record.info
        env = {**record.env, **self._recorded_secrets(record)}
        spec = _recorded_spec(record, env, self.context.config.scratch_dir)
        writable = not info.status.ended
        transcript = _reopen(Path(info.transcript), writable=writable, session_id=info.id)
        session = self._build(spec, backend, info.tag, info.persona_icon, transcript)
        # Its chunks are on disk only: replay must scan the transcript before reading it.
        session.chunks.history.indexed = False
        return session

    def _build(
        self,
        spec: SessionSpec,
        backend: Backend,
        tag: str | None,
        persona_icon: str | None,
        transcript: Transcript,
    ) -> Session:
        # Everything but the daemon's own variables comes from the spec, so a rebuilt
        # session gets what it had; those are the running daemon's (after a restart, the
        # new one's), as a session started now would get them.
        env = session_environment(
            self.context.config,
            backend,
            spec,
            self._daemon_env(),
            (SESSION_MARKER, spec.session_id),
        )
        return Session(
            spec=spec,
            backend=backend,
            tag=tag,
            persona_icon=persona_icon,
            env=env,
            transcript=transcript,
            context=self.context,
        )

    def _recorded_secrets(self, record: SessionRecord) -> dict[str, str]:
        """The session's secret ``--env`` values: from their file, else (it is gone) the
        same names from the daemon's environment, where it has them."""
        if record.info.status.ended:
            return {}
        legacy = split_secrets(record.env)[1]  # a table written before secrets were kept apart
        if legacy:
            self.secrets.save(record.info.id, {**self.secrets.load(record.info.id), **legacy})
        if not record.secret_env:
            return legacy
        saved = {**self.secrets.load(record.info.id), **legacy}
        daemon_env = self._daemon_env()
        missing = [n for n in record.secret_env if n not in saved and n not in daemon_env]
        if missing:
            log.warning("secrets_missing", session_id=record.info.id, names=missing)
        chosen = [n for n in record.secret_env if n not in missing]
        return {n: saved[n] if n in saved else daemon_env[n] for n in chosen}

    def _daemon_env(self) -> dict[str, str]:
        """The daemon's environment with its env file (read again: a key can be rotated
        without a restart). An env file gone bad since the daemon started is logged, and
        sessions get the process environment alone."""
        try:
            return daemon_environment(self.context.config)
        except ConfigError as exc:
            log.error("env_file_unreadable", error=exc.message)
            return daemon_environment(msgspec.structs.replace(self.context.config, env_file=None))


def _recorded_spec(record: SessionRecord, env: dict[str, str], scratch_dir: Path) -> SessionSpec:
    """The spec a session was started with, from what :meth:`Session.record` kept of it."""
    info = record.info
    return SessionSpec(
        session_id=info.id,
        cwd=Path(info.cwd),
        mode=info.mode,
        persona=info.persona,
        instructions=record.instructions,
        model=info.model,
        allowed_tools=tuple(record.allowed_tools),
        permission_policy=record.permission_policy,
        command=tuple(record.command),
        env=env,
        scratch_dir=scratch_dir,
    )


def _reopen(path: Path, *, writable: bool, session_id: str) -> Transcript:
    """The session's transcript; one that cannot be reopened (its directory was removed)
    is reported and left closed, never fatal to the daemon."""
    try:
        return Transcript(path, writable=writable)
    except OSError as exc:
        log.error(
            "transcript_unavailable", session_id=session_id, path=str(path), error=exc.strerror
        )
        return Transcript(path, writable=False)


def _mode(requested: BackendMode | None, backend: Backend) -> BackendMode:
    if requested is None:
        return backend.modes[0]
    if requested not in backend.modes:
        supported = ", ".join(m.value for m in backend.modes)
        raise InvalidArgument(f"backend {backend.id!r} runs only in: {supported}")
    return requested


def _held_policy(spec: SessionSpec, backend: Backend, *, named: bool) -> SessionSpec:
    """``spec`` under a permission policy its backend can hold.

    A backend may say which policies it cannot hold (``check_policy`` raises) and what to
    use instead (``default_policy``). A policy the start request names is refused with the
    backend's reason; one that only came from the persona or the daemon's default falls back
    to the backend's ``default_policy``.
    """
    check = getattr(backend, "check_policy", None)
    if check is None:
        return spec
    try:
        check(spec)
    except InvalidArgument:
        fallback = getattr(backend, "default_policy", None)
        if named or not isinstance(fallback, PermissionPolicy):
            raise
        if fallback is spec.permission_policy:
            raise
        log.info(
            "permission_policy_fallback",
            backend=backend.id,
            policy=spec.permission_policy.value,
            fallback=fallback.value,
        )
        spec = dataclasses.replace(spec, permission_policy=fallback)
        check(spec)
    return spec


def _policy(requested: PermissionPolicy | None, persona: Persona | None) -> PermissionPolicy:
    if requested is not None:
        return requested
    return persona.permission_policy if persona else PermissionPolicy.ASK
