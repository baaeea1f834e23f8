"""One agent session: its processes, turns, queue, chunk stream and transcript."""

from __future__ import annotations

import collections
import math
import os
import time
from dataclasses import dataclass

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from agentplex.plugins.api import (
    Backend,
    BackendMode,
    ChunkData,
    SessionSpec,
)
from agentplex.protocol import (
    ChunkKind,
    Footer,
    MessageIn,
    ProcessExit,
    ProcessSpawned,
    Record,
    SessionInfo,
    SessionStatus,
    Stream,
)
from agentplex.protocol.errors import (
    NothingToAnswer,
    QueueFull,
    SessionEnded,
    SpawnFailed,
    TranscriptFailed,
)
from agentplex.supervisor import request_context
from agentplex.supervisor.agent_process import AgentProcess
from agentplex.supervisor.chunks import BatchOutcome, ChunkStream
from agentplex.supervisor.config import Config
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.history import ChunkHistory
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.output import Line
from agentplex.supervisor.process_group import ChildReaper, DeathPact, kill_tree, spawn
from agentplex.supervisor.resources import TreeUsage
from agentplex.supervisor.scanner import ProcessScanner
from agentplex.supervisor.table import SessionRecord, SessionTable
from agentplex.supervisor.transcript import Transcript


@dataclass(frozen=True)
class SessionContext:
    """The daemon services every session uses."""

    config: Config
    events: EventPublisher
    reaper: ChildReaper
    table: SessionTable
    metrics: Metrics
    scanner: ProcessScanner
    flusher: Flusher
    death_pact: DeathPact | None
    """How agents die with the daemon; None when they are configured to outlive it."""


class Session:
    """A live session. Its tasks run in its own task group, started with :meth:`run`."""

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
        self.turns = 0
        self.exit_code: int | None = None
        self.ended_reason: str | None = None
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
        self._pending: collections.deque[str] = collections.deque()
        self._process: AgentProcess | None = None
        self._process_done = anyio.Event()
        self._process_done.set()
        self._ended = anyio.Event()
        self._terminating = False
        self._turn_started: collections.deque[float] = collections.deque()
        """When each turn still running began (monotonic), for the turn-duration metric."""
        self.resume_id: str | None = None
        """The CLI's conversation id to continue with: from the last turn that completed
        (or that its driver says was saved); a turn killed early may leave nothing."""
        self._tg: TaskGroup | None = None
        self.log = structlog.get_logger(__name__).bind(session_id=self.id, backend=backend.id)

    # ------------------------------------------------------------------ public

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
            queued=len(self._pending),
            exit_code=self.exit_code,
            ended_reason=self.ended_reason,
            usage=self.chunks.usage,
        )

    def record(self) -> SessionRecord:
        """What the durable table keeps: the info plus what is needed to continue it."""
        spec = self.spec
        return SessionRecord(
            info=self.info(),
            env=dict(spec.env),
            command=list(spec.command),
            instructions=spec.instructions,
            allowed_tools=list(spec.allowed_tools),
            permission_policy=spec.permission_policy,
            resume_id=self.resume_id,
            pid_started_at=self.pid_started_at,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the session's tasks until it has ended."""
        # This task inherited the context of the request that started the session; its
        # log lines belong to the session (its logger binds the id), not to that request.
        request_context.forget()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.adopted_pid is not None:
                tg.start_soon(self._watch_adopted, self.adopted_pid)
            task_status.started()
            await self._ended.wait()

    async def _watch_adopted(self, pid: int) -> None:
        """Follow a process taken back after a restart (not our child: its output is lost
        with the old daemon's pipes; its end is still seen, through a pidfd)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            try:
                await anyio.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        if not self._terminating:
            self.adopted_pid = None
            self._finish(SessionStatus.EXITED, "re-adopted agent process ended")

    def begin(self, prompt: str | None) -> None:
        """Start the agent: the first turn, or the long-lived process (then the prompt)."""
        if self.spec.mode is BackendMode.TURN:
            assert prompt is not None
            self._start_turn(prompt)
        else:
            self._launch(self.backend.argv(self.spec, None, None), with_stdin=True)
            if prompt:
                self._deliver(prompt)

    def send(self, message: str) -> int:
        """Deliver ``message`` now, or queue it while a turn runs; returns the queue length."""
        if self.status.ended or self._terminating:
            raise SessionEnded(f"session {self.id} has ended ({self.status}); start a new one")
        if self.transcript.failed is not None:
            raise self.transcript.failed
        self.chunks.last_activity = time.time()
        if self.spec.mode is BackendMode.LONG_LIVED:
            self._deliver(message)
            return 0
        if self._process is None:
            self._start_turn(message)
            return 0
        if len(self._pending) >= self._context.config.queue_limit:
            raise QueueFull(f"session {self.id} already holds {len(self._pending)} queued messages")
        self._pending.append(message)
        return len(self._pending)

    def interrupt(self) -> None:
        """Stop the running turn: in-band when the agent takes that, else SIGINT to its group."""
        if self._process is not None:
            self._process.interrupt()

    def restore(self, record: SessionRecord, status: SessionStatus) -> None:
        """Take back the state a crashed daemon saved (before :meth:`run`)."""
        info = record.info
        self.created_at = info.created_at
        self.turns = info.turns
        self.exit_code = info.exit_code
        self.ended_reason = info.ended_reason
        self.resume_id = record.resume_id
        self.chunks.restore(info.chunks, info.usage, info.cli_session_id)
        self.status = status
        if status.ended:
            self._ended.set()
        elif status is not SessionStatus.INTERRUPTED:
            self.adopted_pid = record.info.pid
            self._adopted_started_at = record.pid_started_at

    @property
    def finished_streaming(self) -> bool:
        """No chunk will ever follow the last one."""
        if self.status is SessionStatus.INTERRUPTED:
            return self.spec.mode is BackendMode.LONG_LIVED
        return self.status.ended

    def permit(self, allow: bool, request_id: str | None = None) -> str:
        """Answer the agent's pending permission request; returns the request id answered."""
        process = self._process
        if process is None or self.status is not SessionStatus.WAITING_INPUT:
            raise NothingToAnswer(f"session {self.id} is not waiting for a permission answer")
        answered = process.answer(allow, request_id)
        self._set_status(SessionStatus.RUNNING)
        return answered

    async def terminate(self, grace: float, reason: str = "terminated by request") -> bool:
        """End the session and every process it started; True if SIGKILL was needed."""
        if self._terminating or self.status.ended:
            await self._ended.wait()
            return False
        self._terminating = True
        self._pending.clear()
        pgid = self._process.child.pid if self._process else self.adopted_pid
        escalated = await self._kill_tree(pgid, grace)
        await self._process_done.wait()
        self._finish(SessionStatus.TERMINATED, reason)
        return escalated

    async def kill_now(self, reason: str) -> None:
        """SIGKILL the session's processes without a grace period and record its end.

        For a daemon told twice to stop; unlike :meth:`terminate` it does not wait on a
        terminate already under way (whose wait for the grace period was cancelled).
        """
        if self.status.ended:
            return
        self._terminating = True
        self._pending.clear()
        pgid = self._process.child.pid if self._process else self.adopted_pid
        await self._kill_tree(pgid, 0)  # no grace: SIGKILL follows SIGTERM at once
        await self._process_done.wait()
        self._finish(SessionStatus.TERMINATED, reason)

    async def _kill_tree(self, pgid: int | None, grace: float) -> bool:
        context = self._context
        return await kill_tree(self.id, pgid, grace, context.reaper, context.scanner)

    # ------------------------------------------------------------------ turns

    def _start_turn(self, message: str) -> None:
        argv = self.backend.argv(self.spec, message, self.resume_id)
        self._turn_started.append(time.monotonic())
        self.turns += 1
        self._log(MessageIn(text=message, ts=time.time(), turn=self.turns))
        self._launch(argv, with_stdin=False)

    def _deliver(self, message: str) -> None:
        """Write a message to the long-lived process's stdin (through its bounded inbox)."""
        process = self._process
        if process is None or process.inbox is None:
            raise SessionEnded(f"session {self.id} has no running process")
        process.deliver(message)
        self._turn_started.append(time.monotonic())
        self.turns += 1
        self._log(MessageIn(text=message, ts=time.time(), turn=self.turns))
        self._set_status(SessionStatus.RUNNING)

    def _launch(self, argv: list[str], *, with_stdin: bool) -> None:
        assert self._tg is not None, "run() must be started first"
        flags = self._context.config.backend_flags.get(self.backend.id, ())
        if flags and not self.spec.command:  # a command given after -- is the user's, verbatim
            argv = [argv[0], *flags, *argv[1:]]
        started = time.monotonic()
        try:
            child = spawn(
                argv,
                cwd=self.spec.cwd,
                env=self._env,
                with_stdin=with_stdin,
                reaper=self._context.reaper,
                pact=self._context.death_pact,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL in argv or env
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SpawnFailed(f"cannot start {argv[0]!r}: {reason}") from exc
        self._context.metrics.process_spawned(self.backend.id, time.monotonic() - started)
        process = AgentProcess(self.id, child, self.backend.driver(self.spec))
        self._process = process
        self._process_done = anyio.Event()
        self._log(ProcessSpawned(pid=child.pid, argv=argv, ts=time.time(), turn=self.turns))
        self.log.info("process_spawned", pid=child.pid, argv0=argv[0])
        if child.stdin is not None:
            process.open_stdin(self._tg, self._context.config.queue_limit, self.log)
            opening = process.driver.opening()
            if opening:
                process.write(opening)
        self._tg.start_soon(self._supervise, process)
        self._set_status(SessionStatus.RUNNING)

    async def _supervise(self, process: AgentProcess) -> None:
        config = self._context.config
        await process.run(
            self._wait_exit,
            self._deliver_lines,
            max_line=config.max_line_bytes,
            drain_timeout=config.drain_timeout,
        )
        if self.spec.mode is BackendMode.TURN and config.stop_turn_leftovers:
            # Agent CLIs orphan their tool processes when stopped; a turn owns what it started.
            await self._kill_tree(None, config.terminate_grace)
        self._process_ended(process)

    async def _wait_exit(self, process: AgentProcess) -> None:
        """Wait for the process; a turn that outlives ``turn_timeout`` is stopped."""
        config = self._context.config
        limit = config.turn_timeout if self.spec.mode is BackendMode.TURN else math.inf
        with anyio.move_on_after(limit) as scope:
            await process.child.wait()
        if scope.cancelled_caught:
            process.timed_out = True
            self.log.warning("turn_timed_out", pid=process.child.pid, limit=limit)
            await self._kill_tree(process.child.pid, config.terminate_grace)
            await process.child.wait()

    def _deliver_lines(self, process: AgentProcess, stream: Stream, lines: list[Line]) -> None:
        if self.transcript.failed is not None:
            return  # the session is being stopped: what cannot be logged is not published
        try:
            outcome = self.chunks.publish_lines(
                lines, stream, process.driver, self.turns, process.stderr_tail
            )
        except TranscriptFailed as exc:
            self._transcript_failed(exc)
            return
        self._after_batch(process, outcome)

    def _log(self, record: Record) -> None:
        """Append a record; a transcript that cannot be written stops the session."""
        try:
            self.transcript.write(record)
        except TranscriptFailed as exc:
            self._transcript_failed(exc)

    def _transcript_failed(self, exc: TranscriptFailed) -> None:
        """Stop a session whose output can no longer be logged; the daemon goes on."""
        if self._terminating or self.status.ended:
            return
        self.log.error("transcript_failed", error=exc.message)
        assert self._tg is not None
        self._tg.start_soon(self.terminate, self._context.config.terminate_grace, exc.message)

    def _process_ended(self, process: AgentProcess) -> None:
        status = process.child.status
        assert status is not None
        self._process = None
        self._log(
            ProcessExit(
                pid=process.child.pid, ts=time.time(), code=status.code, signal=status.signal
            )
        )
        self.exit_code = status.code
        self._process_done.set()
        self.log.info("process_exited", pid=process.child.pid, status=status.describe())
        if self._terminating:
            return
        if self.spec.mode is BackendMode.LONG_LIVED:
            ended = SessionStatus.EXITED if status.code == 0 else SessionStatus.FAILED
            if ended is SessionStatus.FAILED:
                self._report_failure(process, f"{self.backend.id} agent {status.describe()}")
            self._finish(ended, f"agent process ended: {status.describe()}")
            return
        self._end_turn(process, status.describe(), failed=status.code != 0)

    def _end_turn(self, process: AgentProcess, how: str, *, failed: bool) -> None:
        self._turns_finished(1)
        if not failed or (process.interrupted and process.finished):
            self.resume_id = self.chunks.cli_session_id
            self._context.table.changed(self)
        elif (saved := process.driver.resumable_id()) is not None:
            self.resume_id = saved
            self._context.table.changed(self)
        if process.timed_out:
            limit = self._context.config.turn_timeout
            self._emit_daemon(
                ChunkKind.ERROR, f"turn {self.turns} took longer than {limit:g} s and was stopped"
            )
        elif process.interrupted:
            self._emit_daemon(ChunkKind.SYSTEM, f"turn {self.turns} interrupted ({how})")
        elif failed:
            self._report_failure(process, f"{self.backend.id} turn {self.turns} failed: {how}")
        while self._pending:
            try:
                self._start_turn(self._pending.popleft())
                return
            except SpawnFailed as exc:
                self._emit_daemon(ChunkKind.ERROR, exc.message)
        self._set_status(SessionStatus.IDLE)

    # ------------------------------------------------------------------ chunks

    def _turns_finished(self, count: int) -> None:
        now = time.monotonic()
        for _ in range(min(count, len(self._turn_started))):
            started = self._turn_started.popleft()
            self._context.metrics.turn_finished(self.backend.id, now - started)

    def _report_failure(self, process: AgentProcess, what: str) -> None:
        """An ``error`` chunk saying what failed, with the end of the agent's stderr."""
        tail = "\n".join(process.stderr_tail)
        self._emit_daemon(ChunkKind.ERROR, f"{what}\n{tail}".rstrip())

    def _emit_daemon(self, kind: ChunkKind, text: str) -> None:
        data = ChunkData(kind, text, is_error=kind is ChunkKind.ERROR)
        try:
            self.chunks.publish_one(data, self.turns)
        except TranscriptFailed as exc:
            self._transcript_failed(exc)

    def _after_batch(self, process: AgentProcess, outcome: BatchOutcome) -> None:
        """Let the process take in the batch; move a long-lived session's status along."""
        long_lived = self.spec.mode is BackendMode.LONG_LIVED
        if long_lived:
            self._turns_finished(outcome.results)
        status = process.absorb(outcome, self.spec.permission_policy)
        if status is SessionStatus.WAITING_INPUT or (status is SessionStatus.IDLE and long_lived):
            self._set_status(status)

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
        self.log.info("session_ended", status=status.value, reason=reason)
        self._context.events.terminated(self.info(), reason)
        self._ended.set()

    def fail(self, reason: str) -> None:
        """Mark a session that could not start as failed."""
        self._finish(SessionStatus.FAILED, reason)
