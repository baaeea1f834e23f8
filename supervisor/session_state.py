"""What a session is: its identity, status and counters, and the records of them — the
snapshot ``list`` and events carry, the durable table's record and its restoring after a
crash, the transcript's footer and ``session.terminated`` at its end. :class:`Session`
(session.py) adds what it does: its processes, turns and stopping."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup

from agentplex.plugins.api import Backend, BackendMode, SessionSpec
from agentplex.protocol import Footer, SessionInfo, SessionStatus
from agentplex.protocol.errors import TranscriptFailed
from agentplex.supervisor.agent_process import AgentProcess
from agentplex.supervisor.chunks import ChunkStream
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.credentials import SecretStore, split_secrets
from agentplex.supervisor.history import ChunkHistory
from agentplex.supervisor.resources import TreeUsage
from agentplex.supervisor.table import SessionRecord
from agentplex.supervisor.transcript import Transcript
from agentplex.supervisor.turns import Turns


class SessionState:
    """A session's state and the records of it; :class:`Session` runs it."""

    def __init__(
        self,
        *,
        spec: SessionSpec,
        backend: Backend,
        tag: str | None,
        persona_icon: str | None,
        env: dict[str, str],
        transcript: Transcript,
        context: SessionContext,
    ) -> None:
        self.spec = spec
        self.id = spec.session_id
        self.backend = backend
        self.tag = tag
        self.persona_icon = persona_icon
        self.created_at = time.time()
        self.status = SessionStatus.STARTING
        self.exit_code: int | None = None
        self.ended_reason: str | None = None
        self.keep_children = False
        """Let what the agent leaves running outlive it (until a terminate or shutdown)."""
        self.adopted_pid: int | None = None
        """The agent's pid when it was taken back, alive, after a daemon restart."""
        self._adopted_started_at: float | None = None
        self.resources: TreeUsage | None = None
        """The latest sample of its processes' memory and CPU (see limits.LimitWatch)."""
        self.transcript = transcript
        history = ChunkHistory(
            transcript.path,
            ring_chunks=context.config.replay_ring_chunks,
            ring_bytes=context.config.replay_ring_bytes,
        )
        self.chunks = ChunkStream(
            self.id, transcript, context.events, history, context.metrics, backend.id
        )
        self._env = env
        self._context = context
        self._turns = Turns(self.id, backend.id, context.metrics, context.config.queue_limit)
        self._process: AgentProcess | None = None
        self._process_done = anyio.Event()
        self._process_done.set()
        self._ended = anyio.Event()
        self._terminating = False
        self._stopping: anyio.Event | None = None
        """Set when the terminate under way returns, whether it finished or failed."""
        self._tg: TaskGroup | None = None
        self.on_end: Callable[[SessionState], None] | None = None
        """Told once, when the session ends (the registry moves the active session on)."""
        self.log = structlog.get_logger(__name__).bind(session_id=self.id, backend=backend.id)

    # ------------------------------------------------------------------ public

    @property
    def turns(self) -> int:
        """How many turns began (a long-lived session: how many messages it was sent)."""
        return self._turns.count

    @property
    def resume_id(self) -> str | None:
        """The CLI's conversation id the next turn continues."""
        return self._turns.resume_id

    @property
    def conversation_id(self) -> str | None:
        """The CLI's conversation a new process would resume: the next turn's resume id,
        else the last one the CLI reported (a long-lived session's)."""
        return self.resume_id or self.chunks.cli_session_id

    @property
    def resumable(self) -> bool:
        """Whether a new process could take up the CLI's conversation where it stopped."""
        return self.backend.capabilities.resume and self.conversation_id is not None

    @property
    def pid(self) -> int | None:
        """The running process's pid (its process group id too), if one runs."""
        return self._process.child.pid if self._process else None

    @property
    def pid_started_at(self) -> float | None:
        """The running process's start time: with its pid, proof it is still the same one."""
        return self._process.child.started_at if self._process else self._adopted_started_at

    def info(self) -> SessionInfo:
        """A snapshot for ``list`` and events."""
        return SessionInfo(
            id=self.id,
            backend=self.backend.id,
            persona=self.spec.persona,
            tag=self.tag,
            cwd=str(self.spec.cwd),
            status=self.status,
            created_at=self.created_at,
            persona_icon=self.persona_icon,
            rss_bytes=self.resources.rss_bytes if self.resources else None,
            cpu_percent=self.resources.cpu_percent if self.resources else None,
            mode=self.spec.mode,
            model=self.spec.model,
            pid=self._process.child.pid if self._process else self.adopted_pid,
            cli_session_id=self.chunks.cli_session_id,
            turns=self.turns,
            chunks=self.chunks.seq,
            transcript=str(self.transcript.path),
            queued=len(self._turns.queued),
            exit_code=self.exit_code,
            ended_reason=self.ended_reason,
            usage=self.chunks.usage,
            keep_children=self.keep_children,
        )

    def record(self) -> SessionRecord:
        """What the durable table keeps: the info plus what is needed to continue it."""
        spec = self.spec
        plain, secret = split_secrets(spec.env)
        return SessionRecord(
            info=self.info(),
            env=plain,
            secret_env=sorted(secret),
            command=list(spec.command),
            instructions=spec.instructions,
            allowed_tools=list(spec.allowed_tools),
            permission_policy=spec.permission_policy,
            resume_id=self.resume_id,
            pid_started_at=self.pid_started_at,
            thread_usage=self.chunks.meter.thread,
        )

    def restore(self, record: SessionRecord, status: SessionStatus) -> None:
        """Take back the state a crashed daemon saved (before :meth:`run`)."""
        info = record.info
        self.created_at = info.created_at
        self._turns.count = info.turns
        self.exit_code = info.exit_code
        self.ended_reason = info.ended_reason
        self._turns.resume_id = record.resume_id
        self.keep_children = info.keep_children
        self.chunks.restore(info.chunks, info.usage, info.cli_session_id, record.thread_usage)
        self.status = status
        if status.ended:
            self._ended.set()
        elif status is not SessionStatus.INTERRUPTED:
            self.adopted_pid = record.info.pid
            self._adopted_started_at = record.pid_started_at

    @property
    def finished_streaming(self) -> bool:
        """No chunk will ever follow the last one."""
        if self.status is SessionStatus.INTERRUPTED:  # a resumable one can be continued
            return self.spec.mode is BackendMode.LONG_LIVED and not self.resumable
        return self.status.ended

    # ------------------------------------------------------------------ status

    def _set_status(self, status: SessionStatus) -> None:
        previous, self.status = self.status, status
        if previous != status:
            self.log.debug("status_changed", status=status.value, previous=previous.value)
            self._context.events.status_changed(self.info(), previous)
            self._context.table.changed(self)

    def _finish(self, status: SessionStatus, reason: str) -> None:
        """Record the end: footer, final status, ``session.terminated``; once."""
        if self._ended.is_set():
            return
        self.ended_reason = reason
        self._set_status(status)
        footer = Footer(
            ts=time.time(),
            status=status,
            reason=reason,
            chunks=self.chunks.seq,
            turns=self.turns,
            usage=self.chunks.usage,
        )
        try:
            self.transcript.write(footer)
        except TranscriptFailed as exc:
            self.log.error("transcript_not_finished", error=exc.message)
        self.transcript.close(self._context.flusher)
        self._context.scanner.forget(self.id)
        SecretStore(Path(self._context.config.runtime_dir)).delete(self.id)  # none will run
        self.log.info("session_ended", status=status.value, reason=reason)
        self._context.events.terminated(self.info(), reason)
        self._ended.set()
        if self.on_end is not None:
            self.on_end(self)

    def fail(self, reason: str) -> None:
        """Mark a session that could not start as failed."""
        self._finish(SessionStatus.FAILED, reason)
