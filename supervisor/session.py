"""One agent session: its processes, turns, queue, chunk stream and transcript."""

from __future__ import annotations

import collections
import math
import os
import signal
import time
from dataclasses import dataclass

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agentplex.client.errors import NothingToAnswer, QueueFull, SessionEnded, SpawnFailed
from agentplex.client.protocol import (
    ChunkKind,
    Footer,
    MessageIn,
    ProcessExit,
    ProcessSpawned,
    SessionInfo,
    SessionStatus,
    Stream,
)
from agentplex.plugins.api import (
    Backend,
    BackendMode,
    ChunkData,
    Driver,
    PermissionPolicy,
    SessionSpec,
)
from agentplex.supervisor.chunks import BatchOutcome, ChunkStream
from agentplex.supervisor.config import Config
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.history import ChunkHistory
from agentplex.supervisor.output import Line, pump_lines
from agentplex.supervisor.process_group import Child, ChildReaper, kill_tree, signal_group, spawn
from agentplex.supervisor.transcript import Transcript

STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class SessionContext:
    """The daemon services every session uses."""

    config: Config
    events: EventPublisher
    reaper: ChildReaper


@dataclass
class _Process:
    """A running child and what the session tracks about it."""

    child: Child
    driver: Driver
    stderr_tail: collections.deque[str]
    inbox: MemoryObjectSendStream[bytes] | None = None
    interrupted: bool = False
    timed_out: bool = False
    finished: bool = False
    """The agent reported the end of its turn (a result)."""


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
        self.transcript = transcript
        history = ChunkHistory(
            transcript.path,
            ring_chunks=context.config.replay_ring_chunks,
            ring_bytes=context.config.replay_ring_bytes,
        )
        self.chunks = ChunkStream(self.id, transcript, context.events, history)
        self._env = env
        self._context = context
        self._pending: collections.deque[str] = collections.deque()
        self._process: _Process | None = None
        self._process_done = anyio.Event()
        self._process_done.set()
        self._ended = anyio.Event()
        self._terminating = False
        self._pending_permission: str | None = None
        self._resume_id: str | None = None
        """The CLI's conversation id from the last turn that completed: a turn killed
        before it finished may have left nothing to resume."""
        self._tg: TaskGroup | None = None
        self.log = structlog.get_logger(__name__).bind(session_id=self.id, backend=backend.id)

    # ------------------------------------------------------------------ public

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
            mode=self.spec.mode.value,
            model=self.spec.model,
            pid=self._process.child.pid if self._process else None,
            cli_session_id=self.chunks.cli_session_id,
            turns=self.turns,
            chunks=self.chunks.seq,
            transcript=str(self.transcript.path),
            queued=len(self._pending),
            exit_code=self.exit_code,
            ended_reason=self.ended_reason,
            usage=self.chunks.usage,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the session's tasks until it has ended."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await self._ended.wait()

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
        process = self._process
        if process is None:
            return
        process.interrupted = True
        in_band = process.driver.interrupt() if process.inbox is not None else None
        if in_band:
            self._write_stdin(process, in_band)
        else:
            signal_group(process.child.pid, signal.SIGINT)

    async def replay(self, from_seq: int, limit: int) -> list[bytes]:
        """Chunks from ``from_seq`` on, at most ``limit``: from memory, else from disk."""
        history = self.chunks.history
        found = history.from_memory(from_seq, limit)
        if found is None:
            found = await anyio.to_thread.run_sync(history.from_disk, from_seq, limit)
        return found

    @property
    def finished_streaming(self) -> bool:
        """No chunk will ever follow the last one."""
        if self.status is SessionStatus.INTERRUPTED:
            return self.spec.mode is BackendMode.LONG_LIVED
        return self.status.ended

    def permit(self, allow: bool, request_id: str | None = None) -> str:
        """Answer the agent's pending permission request; returns the request id answered."""
        process = self._process
        request_id = request_id or self._pending_permission
        if process is None or self.status is not SessionStatus.WAITING_INPUT or not request_id:
            raise NothingToAnswer(f"session {self.id} is not waiting for a permission answer")
        self._write_stdin(process, process.driver.answer_permission(request_id, allow))
        self._pending_permission = None
        self._set_status(SessionStatus.RUNNING)
        return request_id

    async def terminate(self, grace: float, reason: str = "terminated by request") -> bool:
        """End the session and every process it started; True if SIGKILL was needed."""
        if self._terminating or self.status.ended:
            await self._ended.wait()
            return False
        self._terminating = True
        self._pending.clear()
        pgid = self._process.child.pid if self._process else None
        escalated = await kill_tree(self.id, pgid, grace, self._context.reaper)
        await self._process_done.wait()
        self._finish(SessionStatus.TERMINATED, reason)
        return escalated

    # ------------------------------------------------------------------ turns

    def _start_turn(self, message: str) -> None:
        argv = self.backend.argv(self.spec, message, self._resume_id)
        self.turns += 1
        self.transcript.write(MessageIn(text=message, ts=time.time(), turn=self.turns))
        self._launch(argv, with_stdin=False)

    def _deliver(self, message: str) -> None:
        """Write a message to the long-lived process's stdin (through its bounded inbox)."""
        process = self._process
        if process is None or process.inbox is None:
            raise SessionEnded(f"session {self.id} has no running process")
        self._write_stdin(process, process.driver.encode_input(message))
        self.turns += 1
        self.transcript.write(MessageIn(text=message, ts=time.time(), turn=self.turns))
        self._set_status(SessionStatus.RUNNING)

    def _write_stdin(self, process: _Process, data: bytes) -> None:
        assert process.inbox is not None
        try:
            process.inbox.send_nowait(data)
        except anyio.WouldBlock:
            raise QueueFull(f"session {self.id}: the agent is not reading its stdin") from None
        except anyio.ClosedResourceError:
            raise SessionEnded(f"session {self.id}: the agent process has ended") from None

    def _launch(self, argv: list[str], *, with_stdin: bool) -> None:
        assert self._tg is not None, "run() must be started first"
        try:
            child = spawn(
                argv,
                cwd=self.spec.cwd,
                env=self._env,
                with_stdin=with_stdin,
                reaper=self._context.reaper,
            )
        except OSError as exc:
            raise SpawnFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        process = _Process(
            child, self.backend.driver(self.spec), collections.deque(maxlen=STDERR_TAIL_LINES)
        )
        self._process = process
        self._process_done = anyio.Event()
        self.transcript.write(
            ProcessSpawned(pid=child.pid, argv=argv, ts=time.time(), turn=self.turns)
        )
        self.log.info("process_spawned", pid=child.pid, argv0=argv[0])
        if child.stdin is not None:
            send, receive = anyio.create_memory_object_stream[bytes](
                self._context.config.queue_limit
            )
            process.inbox = send
            self._tg.start_soon(_feed_stdin, child.stdin, receive, self.log)
            opening = process.driver.opening()
            if opening:
                self._write_stdin(process, opening)
        self._tg.start_soon(self._supervise, process)
        self._set_status(SessionStatus.RUNNING)

    async def _supervise(self, process: _Process) -> None:
        child = process.child
        try:
            async with anyio.create_task_group() as tg:
                pumps_done = _Countdown(2)
                tg.start_soon(self._pump, process, child.stdout, Stream.STDOUT, pumps_done)
                tg.start_soon(self._pump, process, child.stderr, Stream.STDERR, pumps_done)
                await self._wait_exit(process)
                with anyio.move_on_after(self._context.config.drain_timeout):
                    await pumps_done.wait()
                tg.cancel_scope.cancel()
        finally:
            os.close(child.stdout)
            os.close(child.stderr)
            if process.inbox is not None:
                process.inbox.close()
        self._process_ended(process)

    async def _wait_exit(self, process: _Process) -> None:
        """Wait for the process; a turn that outlives ``turn_timeout`` is stopped."""
        config = self._context.config
        limit = config.turn_timeout if self.spec.mode is BackendMode.TURN else math.inf
        with anyio.move_on_after(limit) as scope:
            await process.child.wait()
        if scope.cancelled_caught:
            process.timed_out = True
            self.log.warning("turn_timed_out", pid=process.child.pid, limit=limit)
            await kill_tree(
                self.id, process.child.pid, config.terminate_grace, self._context.reaper
            )
            await process.child.wait()

    async def _pump(self, process: _Process, fd: int, stream: Stream, done: _Countdown) -> None:
        def deliver(lines: list[Line]) -> None:
            outcome = self.chunks.publish_lines(
                lines, stream, process.driver, self.turns, process.stderr_tail
            )
            self._after_batch(process, outcome)

        try:
            await pump_lines(fd, self._context.config.max_line_bytes, deliver)
        finally:
            done.tick()

    def _process_ended(self, process: _Process) -> None:
        status = process.child.status
        assert status is not None
        self._process = None
        self.transcript.write(
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
            self._finish(ended, f"agent process ended: {status.describe()}")
            return
        self._end_turn(process, status.describe(), failed=status.code != 0)

    def _end_turn(self, process: _Process, how: str, *, failed: bool) -> None:
        if not failed or (process.interrupted and process.finished):
            self._resume_id = self.chunks.cli_session_id
        if process.timed_out:
            limit = self._context.config.turn_timeout
            self._emit_daemon(
                ChunkKind.ERROR, f"turn {self.turns} took longer than {limit:g} s and was stopped"
            )
        elif process.interrupted:
            self._emit_daemon(ChunkKind.SYSTEM, f"turn {self.turns} interrupted ({how})")
        elif failed:
            tail = "\n".join(process.stderr_tail)
            self._emit_daemon(
                ChunkKind.ERROR,
                f"{self.backend.id} turn {self.turns} failed: {how}\n{tail}".rstrip(),
            )
        while self._pending:
            try:
                self._start_turn(self._pending.popleft())
                return
            except SpawnFailed as exc:
                self._emit_daemon(ChunkKind.ERROR, exc.message)
        self._set_status(SessionStatus.IDLE)

    # ------------------------------------------------------------------ chunks

    def _emit_daemon(self, kind: ChunkKind, text: str) -> None:
        data = ChunkData(kind, text, is_error=kind is ChunkKind.ERROR)
        self.chunks.publish_one(data, self.turns)

    def _after_batch(self, process: _Process, outcome: BatchOutcome) -> None:
        """Answer what the driver must answer; move a long-lived session's status along."""
        process.finished |= outcome.turn_over
        outgoing = process.driver.take_outgoing()
        if outgoing and process.inbox is not None:
            self._write_stdin(process, outgoing)
        if outcome.permission_request and self.spec.permission_policy is PermissionPolicy.ASK:
            self._pending_permission = outcome.permission_request
            self._set_status(SessionStatus.WAITING_INPUT)
        elif outcome.turn_over and self.spec.mode is BackendMode.LONG_LIVED:
            self._set_status(SessionStatus.IDLE)

    # ------------------------------------------------------------------ status

    def _set_status(self, status: SessionStatus) -> None:
        previous, self.status = self.status, status
        if previous != status:
            self.log.debug("status_changed", status=status.value, previous=previous.value)
            self._context.events.status_changed(self.info(), previous)

    def _finish(self, status: SessionStatus, reason: str) -> None:
        """Record the end: footer, final status, ``session.terminated``; once."""
        if self._ended.is_set():
            return
        self.ended_reason = reason
        self._set_status(status)
        self.transcript.write(
            Footer(
                ts=time.time(),
                status=status,
                reason=reason,
                chunks=self.chunks.seq,
                turns=self.turns,
                usage=self.chunks.usage,
            )
        )
        self.transcript.close()
        self.log.info("session_ended", status=status.value, reason=reason)
        self._context.events.terminated(self.info(), reason)
        self._ended.set()

    def fail(self, reason: str) -> None:
        """Mark a session that could not start as failed."""
        self._finish(SessionStatus.FAILED, reason)


class _Countdown:
    """An event that fires after ``count`` ticks."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._event = anyio.Event()

    def tick(self) -> None:
        self._count -= 1
        if self._count <= 0:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def _feed_stdin(
    fd: int, inbox: MemoryObjectReceiveStream[bytes], log: structlog.typing.FilteringBoundLogger
) -> None:
    """Write queued messages to a long-lived agent's stdin; the pipe paces the writes."""
    try:
        async with inbox:
            async for data in inbox:
                view = memoryview(data)
                while view:
                    await anyio.wait_writable(fd)
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:
                        continue
    except BrokenPipeError:
        log.warning("stdin_closed_by_agent")
    finally:
        os.close(fd)
