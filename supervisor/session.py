"""One agent session at work: its processes, turns, queue and stopping (its state and the
records of it are :class:`SessionState`'s, session_state.py)."""

from __future__ import annotations

import math
import time

import anyio
from anyio.abc import TaskStatus

from agentplex.plugins.api import BackendMode, ChunkData
from agentplex.protocol import (
    ChunkKind,
    ProcessExit,
    ProcessSpawned,
    Record,
    SessionStatus,
    Stream,
)
from agentplex.protocol.errors import (
    InvalidArgument,
    NothingToAnswer,
    NothingToInterrupt,
    QueueFull,
    SessionEnded,
    SpawnFailed,
    TranscriptFailed,
)
from agentplex.supervisor import request_context
from agentplex.supervisor.agent_process import AgentProcess, argv_too_long, launch
from agentplex.supervisor.chunks import BatchOutcome
from agentplex.supervisor.command_line import piped_command, turn_command
from agentplex.supervisor.output import Line
from agentplex.supervisor.process_group import check_executable, kill_tree, wait_gone
from agentplex.supervisor.session_state import SessionState

_NO_TURN = frozenset({SessionStatus.IDLE, SessionStatus.STARTING, SessionStatus.INTERRUPTED})
"""A session in one of these runs no turn that an interrupt could stop."""


class Session(SessionState):
    """A live session. Its tasks run in its own task group, started with :meth:`run`."""

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
        await wait_gone(pid)
        if not self._terminating:
            self.adopted_pid = None
            self._finish(SessionStatus.EXITED, "re-adopted agent process ended")

    def begin(self, prompt: str | None) -> None:
        """Start the agent: the first turn, or the long-lived process (then the prompt).

        Messages sent while the start was in flight were queued (see :meth:`send`): they
        follow the prompt, in order (a turn session runs them as its next turns).
        """
        if self.spec.mode is BackendMode.TURN:
            assert prompt is not None
            self._start_turn(prompt)
            return
        self._launch(self.backend.argv(self.spec, None, None), with_stdin=True)
        if prompt:
            self._deliver(prompt)
        while self._turns.queued:
            try:
                self._deliver(self._turns.queued.popleft())
            except QueueFull as exc:  # the inbox holds the opening and prompt too
                self._emit_daemon(ChunkKind.ERROR, f"a message sent during the start: {exc}")

    def check_program(self, program: str) -> None:
        """Raise the SpawnFailed a spawn would, before any, if ``program`` cannot be run
        from this session's working directory and PATH."""
        try:
            check_executable(program, self.spec.cwd, self._env)
        except OSError as exc:
            raise SpawnFailed(f"cannot start {program!r}: {exc.strerror or exc}") from exc

    def send(self, message: str) -> int:
        """Deliver ``message`` now, or queue it while a turn runs; returns the queue length."""
        if self.status.ended or self._terminating:
            raise SessionEnded(f"session {self.id} has ended ({self.status}); start a new one")
        if self.transcript.failed is not None:
            raise self.transcript.failed
        self.chunks.last_activity = time.time()
        if self.spec.mode is BackendMode.TURN:  # refuse now what could never start a turn
            turn_command(self.backend, self.spec, message, self.resume_id)
        if self.status is SessionStatus.STARTING:
            # Registered, not begun: the start request is still in flight. The message
            # waits for begin(), so it comes after the prompt, never as turn 1.
            return self._turns.queue(message)
        if self.spec.mode is BackendMode.LONG_LIVED:
            if self._continuable():
                argv = self.backend.argv(self.spec, None, self.conversation_id)
                self._launch(argv, with_stdin=True)
            self._deliver(message)
            return 0
        if self._process is None:
            self._start_turn(message)
            return 0
        return self._turns.queue(message)

    def _continuable(self) -> bool:
        """A long-lived session whose process went with a crashed daemon, continued on its
        next message by a new process that resumes the CLI's conversation."""
        return (
            self.status is SessionStatus.INTERRUPTED
            and self._process is None
            and self.adopted_pid is None
            and self.resumable
        )

    def interrupt(self) -> None:
        """Stop the running turn: in-band when the agent takes that, else SIGINT to its group.

        Refused, as ``send`` and ``permit`` refuse what cannot be done, when no turn runs.
        """
        if self.status.ended or self._terminating:
            raise SessionEnded(f"session {self.id} has ended ({self.status}): nothing to interrupt")
        if self._process is None or self.status in _NO_TURN:
            raise NothingToInterrupt(f"session {self.id} is {self.status}: no turn is running")
        self._process.interrupt()

    def permit(self, allow: bool, request_id: str | None = None) -> str:
        """Answer the agent's pending permission request; returns the request id answered."""
        process = self._process
        if process is None or self.status is not SessionStatus.WAITING_INPUT:
            raise NothingToAnswer(f"session {self.id} is not waiting for a permission answer")
        answered = process.answer(allow, request_id)
        self._set_status(SessionStatus.RUNNING)
        return answered

    async def terminate(self, grace: float, reason: str = "terminated by request") -> bool:
        """End the session and every process it started; True if SIGKILL was needed.

        Idempotent: a terminate that finds another under way waits for it, and takes over
        if that one failed midway (it leaves the session as it found it, retryable).
        """
        while not self.status.ended:
            attempt = self._stopping
            if attempt is None:
                return await self._stop(grace, reason)
            await attempt.wait()
        if self.keep_children:  # what it was allowed to leave running ends now
            return await self._kill_tree(None, grace)
        return False

    async def kill_now(self, reason: str) -> None:
        """SIGKILL the session's processes without a grace period and record its end.

        For a daemon told twice to stop; unlike :meth:`terminate` it does not wait on a
        terminate already under way (whose wait for the grace period was cancelled).
        """
        if not self.status.ended:
            await self._stop(0, reason)  # no grace: SIGKILL follows SIGTERM at once

    async def _stop(
        self, grace: float, reason: str, status: SessionStatus = SessionStatus.TERMINATED
    ) -> bool:
        attempt = self._stopping = anyio.Event()
        self._terminating = True  # from here no process is spawned (see _check_startable)
        try:
            self._turns.queued.clear()
            pgid = self._process.child.pid if self._process else self.adopted_pid
            escalated = await self._kill_tree(pgid, grace)
            await self._process_done.wait()
        except BaseException:
            # Failed or cancelled midway: the session stays what it was, so a retry (or
            # a terminate waiting on this one) can finish the job; never wedged.
            self._terminating = False
            raise
        finally:
            self._stopping = None
            attempt.set()
        self._finish(status, reason)
        return escalated

    async def _kill_tree(self, pgid: int | None, grace: float) -> bool:
        context = self._context
        return await kill_tree(self.id, pgid, grace, context.reaper, context.scanner)

    # ------------------------------------------------------------------ turns

    def _check_startable(self) -> None:
        """Refuse to spawn for a session being stopped or ended: a terminate that came
        while its start was in flight must not be outrun by the spawn."""
        if self._terminating or self.status.ended:
            raise SessionEnded(f"session {self.id} was terminated before its agent started")

    def _start_turn(self, message: str) -> None:
        self._check_startable()
        command = turn_command(self.backend, self.spec, message, self.resume_id, self._env)
        self._log_turn(message)
        try:
            self._launch(command.argv, with_stdin=False, prompt=command.stdin)
        except SpawnFailed as exc:
            # The kernel found argv too long after all (what the daemon adds at spawn):
            # the prompt goes on stdin when the backend takes it there.
            piped = None
            if command.stdin is None and argv_too_long(exc):
                piped = piped_command(self.backend, self.spec, message, self.resume_id)
            if piped is None:
                raise
            self._launch(piped.argv, with_stdin=False, prompt=piped.stdin)

    def _deliver(self, message: str) -> None:
        """Write a message to the long-lived process's stdin (through its bounded inbox),
        logged first: what reaches the agent is in the transcript."""
        process = self._process
        if process is None or process.inbox is None:
            raise SessionEnded(f"session {self.id} has no running process")
        process.check_writable()  # never log as a turn what the agent will not be given
        self._log_turn(message)
        process.deliver(message)
        self._set_status(SessionStatus.RUNNING)

    def _log_turn(self, message: str) -> None:
        """Log the turn ``message`` begins, or stop the session and raise: a message that
        cannot be logged is refused, never given to the agent unrecorded (a full disk)."""
        try:
            self.transcript.write(self._turns.begin(message))
        except TranscriptFailed as exc:
            self._transcript_failed(exc)
            raise

    def _launch(self, argv: list[str], *, with_stdin: bool, prompt: bytes | None = None) -> None:
        """Spawn the agent; a long-lived one reads messages on stdin (``with_stdin``), a
        turn given a ``prompt`` reads that on stdin, up to EOF."""
        assert self._tg is not None, "run() must be started first"
        self._check_startable()
        piped = with_stdin or prompt is not None
        process, argv = launch(
            argv, self.spec, self.backend, self._env, self._context, with_stdin=piped
        )
        child = process.child
        self._process = process
        self.chunks.meter.new_process()  # its running usage figures begin at zero
        self._process_done = anyio.Event()
        self._log(ProcessSpawned(pid=child.pid, argv=argv, ts=time.time(), turn=self.turns))
        self.log.info("process_spawned", pid=child.pid, argv0=argv[0])
        if prompt is not None:
            process.feed_prompt(self._tg, prompt, self.log)
        elif child.stdin is not None:
            process.open_stdin(self._tg, self._context.config.queue_limit, self.log)
        self._tg.start_soon(self._supervise, process)
        self._set_status(SessionStatus.RUNNING)

    async def _supervise(self, process: AgentProcess) -> None:
        config = self._context.config
        turn = self.spec.mode is BackendMode.TURN

        async def stop(pid: int) -> None:
            await self._kill_tree(pid, config.terminate_grace)

        await process.run(
            self._deliver_lines,
            stop,
            self.log,
            time_limit=config.turn_timeout if turn else math.inf,
            max_line=config.max_line_bytes,
            drain_timeout=config.drain_timeout,
        )
        if not self.keep_children and (config.stop_turn_leftovers or not turn):
            # Agent CLIs orphan their tool processes when stopped; a turn, and an agent
            # process, owns what it started: what it left running ends with it.
            await self._kill_tree(None, config.terminate_grace)
        self._process_ended(process)

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
        if self._turns.ended(process, self.chunks.cli_session_id, failed=failed):
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
        while self._turns.queued:
            try:
                self._start_turn(self._turns.queued.popleft())
                return
            except (SpawnFailed, InvalidArgument) as exc:
                self._emit_daemon(ChunkKind.ERROR, exc.message)
            except TranscriptFailed:
                return  # the session is being stopped (_log_turn); the queue goes with it
        self._set_status(SessionStatus.IDLE)

    # ------------------------------------------------------------------ chunks

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
            self._turns.finished(outcome.results)
        status = process.absorb(outcome, self.spec.permission_policy)
        if status is SessionStatus.WAITING_INPUT or (status is SessionStatus.IDLE and long_lived):
            self._set_status(status)
        failure = process.driver.failure()
        if failure is not None and not self._terminating and self._tg is not None:
            self._terminating = True  # once: later batches find the stop under way
            self._tg.start_soon(self._fail_agent, failure)

    async def _fail_agent(self, reason: str) -> None:
        """End a session whose agent can never be used (its driver says why) as failed."""
        if not self.status.ended and self._stopping is None:  # else a terminate came first
            await self._stop(self._context.config.terminate_grace, reason, SessionStatus.FAILED)
