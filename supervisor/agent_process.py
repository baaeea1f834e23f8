"""One running agent process: its pipes, its driver, its stdin inbox, how its turn went."""

from __future__ import annotations

import collections
import errno
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agentplex.plugins.api import Backend, Driver, PermissionPolicy, SessionSpec
from agentplex.protocol import SessionStatus, Stream
from agentplex.protocol.errors import (
    AgentNotReading,
    NothingToAnswer,
    QueueFull,
    SessionEnded,
    SpawnFailed,
)
from agentplex.supervisor.chunks import BatchOutcome
from agentplex.supervisor.output import PARTIAL_AFTER, Line, pump_lines
from agentplex.supervisor.process_group import Child, signal_group, spawn

STDERR_TAIL_LINES = 20

if TYPE_CHECKING:
    from agentplex.supervisor.context import SessionContext

Deliver = Callable[["AgentProcess", Stream, list[Line]], None]


@dataclass
class AgentProcess:
    """A spawned agent and what the session tracks about it."""

    session_id: str
    child: Child
    driver: Driver
    stderr_tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES)
    )
    inbox: MemoryObjectSendStream[bytes] | None = None
    interrupted: bool = False
    timed_out: bool = False
    finished: bool = False
    """The agent reported the end of its turn (a result)."""
    awaiting_results: int = 0
    """Messages delivered to a long-lived agent whose turn has not reported its end."""
    pending_permission: str | None = None
    """The permission request a person must answer, if the agent asked one."""

    def open_stdin(
        self, tg: TaskGroup, queue_limit: int, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        """Start feeding the child's stdin from a bounded inbox, the driver's opening
        handshake first."""
        assert self.child.stdin is not None
        send, receive = anyio.create_memory_object_stream[bytes](queue_limit)
        self.inbox = send
        tg.start_soon(_feed_stdin, self.child.stdin, receive, log)
        opening = self.driver.opening()
        if opening:
            self.write(opening)

    def feed_prompt(
        self, tg: TaskGroup, prompt: bytes, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        """Write a turn's prompt to the child's stdin, then close it (the CLI reads to EOF).

        Written by the same non-blocking feeder as messages, paced by the pipe; the inbox
        stays None, so the turn takes no other input and is interrupted by SIGINT.
        """
        assert self.child.stdin is not None
        send, receive = anyio.create_memory_object_stream[bytes](1)
        with send:  # closed once the prompt is queued: the feeder closes stdin after it
            send.send_nowait(prompt)
        tg.start_soon(_feed_stdin, self.child.stdin, receive, log)

    def check_writable(self) -> None:
        """Raise what :meth:`write` would raise now, writing nothing: a message is logged
        before it is written, and only when it will be taken."""
        if self.inbox is None:
            raise SessionEnded(f"session {self.session_id} has no agent reading messages")
        room = self.inbox.statistics()
        if not room.open_send_streams:  # closed by run(): the process has ended
            raise SessionEnded(f"session {self.session_id}: the agent process has ended")
        if not room.open_receive_streams:  # _feed_stdin stopped: the agent closed its stdin
            raise AgentNotReading(
                f"session {self.session_id}: the agent closed its stdin and reads no more messages"
            )
        if room.current_buffer_used >= room.max_buffer_size and not room.tasks_waiting_receive:
            raise QueueFull(f"session {self.session_id}: the agent is not reading its stdin")

    def write(self, data: bytes) -> None:
        """Queue bytes for the child's stdin, refusing when the inbox is full or closed."""
        self.check_writable()
        assert self.inbox is not None  # checked above
        self.inbox.send_nowait(data)  # cannot fail: nothing ran since the check

    def deliver(self, message: str) -> None:
        """Send a message to the long-lived agent; its turn is open until a result."""
        self.write(self.driver.encode_input(message))
        self.awaiting_results += 1

    def interrupt(self) -> None:
        """Stop the running turn: in-band when the agent takes that, else SIGINT to its group."""
        self.interrupted = True
        in_band = self.driver.interrupt() if self.inbox is not None else None
        if in_band is None:
            signal_group(self.child.pid, signal.SIGINT)
        elif in_band:
            self.write(in_band)

    def answer(self, allow: bool, request_id: str | None) -> str:
        """Answer the agent's permission request (the pending one if no id is given)."""
        request_id = request_id or self.pending_permission
        if request_id is None:
            raise NothingToAnswer(f"session {self.session_id} has no permission request open")
        self.write(self.driver.answer_permission(request_id, allow))
        self.pending_permission = None
        return request_id

    def absorb(self, outcome: BatchOutcome, policy: PermissionPolicy) -> SessionStatus | None:
        """Take in what a batch of output meant: answer what the driver must answer, and
        return the status the session moves to (None: unchanged)."""
        self.finished |= outcome.results > 0
        self.awaiting_results = max(0, self.awaiting_results - outcome.results)
        outgoing = self.driver.take_outgoing()
        if outgoing and self.inbox is not None:
            self.write(outgoing)
        if outcome.permission_request and policy is PermissionPolicy.ASK:
            self.pending_permission = outcome.permission_request
            return SessionStatus.WAITING_INPUT
        if outcome.results and not self.awaiting_results:
            return SessionStatus.IDLE
        return None

    async def run(
        self,
        deliver: Deliver,
        stop: Callable[[int], Awaitable[object]],
        log: structlog.typing.FilteringBoundLogger,
        *,
        time_limit: float,
        max_line: int,
        drain_timeout: float,
    ) -> None:
        """Read both pipes until the process has exited and its output is drained.

        A process still running after ``time_limit`` seconds (a turn's timeout) is ended
        with ``stop(pid)``. A leftover descendant may hold the pipes open after the agent
        exited: reading stops ``drain_timeout`` seconds after the exit, whatever remains.
        """
        child = self.child
        try:
            async with anyio.create_task_group() as tg:
                pumps_done = _Countdown(2)
                for fd, stream in ((child.stdout, Stream.STDOUT), (child.stderr, Stream.STDERR)):
                    tg.start_soon(self._pump, fd, stream, deliver, max_line, pumps_done)
                await self._wait_exit(time_limit, stop, log)
                with anyio.move_on_after(drain_timeout):
                    await pumps_done.wait()
                tg.cancel_scope.cancel()
        finally:
            os.close(child.stdout)
            os.close(child.stderr)
            if self.inbox is not None:
                self.inbox.close()

    async def _wait_exit(
        self,
        limit: float,
        stop: Callable[[int], Awaitable[object]],
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        with anyio.move_on_after(limit) as scope:
            await self.child.wait()
        if scope.cancelled_caught:
            self.timed_out = True
            log.warning("turn_timed_out", pid=self.child.pid, limit=limit)
            await stop(self.child.pid)
            await self.child.wait()

    async def _pump(
        self, fd: int, stream: Stream, deliver: Deliver, max_line: int, done: _Countdown
    ) -> None:
        # A plain-text agent's unfinished line (a prompt) is shown after a pause; a driver
        # that parses its lines (JSON) needs each whole, and ends every one anyway.
        plain = type(self.driver).parse is Driver.parse
        partial_after = PARTIAL_AFTER if plain else None
        try:
            await pump_lines(
                fd, max_line, lambda lines: deliver(self, stream, lines), partial_after
            )
        finally:
            done.tick()


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
    """Write queued messages (a long-lived agent's, or a turn's prompt) to the agent's
    stdin, and close it when the inbox closes; the pipe paces the writes."""
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


def argv_too_long(exc: SpawnFailed) -> bool:
    """Whether a spawn failed because argv and environment were too long (E2BIG)."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.E2BIG


def launch(
    argv: list[str],
    spec: SessionSpec,
    backend: Backend,
    env: dict[str, str],
    context: SessionContext,
    *,
    with_stdin: bool,
) -> tuple[AgentProcess, list[str]]:
    """Spawn one agent process of a session in its own group, with its backend's driver;
    returns it and the argv it runs (with the backend's configured flags)."""
    flags = context.config.backend_flags.get(backend.id, ())
    if flags and not spec.command:  # a command given after -- is the user's, verbatim
        argv = [argv[0], *flags, *argv[1:]]
    started = time.monotonic()
    try:
        child = spawn(
            argv,
            cwd=spec.cwd,
            env=env,
            with_stdin=with_stdin,
            reaper=context.reaper,
            pact=context.death_pact,
            subreaper=context.scanner.mode == "tree",  # a cgroup holds the tree otherwise
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL in argv or env
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpawnFailed(f"cannot start {argv[0]!r}: {reason}") from exc
    context.scanner.track(spec.session_id, child.pid)
    context.metrics.process_spawned(backend.id, time.monotonic() - started)
    return AgentProcess(spec.session_id, child, backend.driver(spec)), argv
