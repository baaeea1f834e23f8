"""One running agent process: its pipes, its driver, its stdin inbox, how its turn went."""

from __future__ import annotations

import collections
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agentplex.client.errors import QueueFull, SessionEnded
from agentplex.client.protocol import Stream
from agentplex.plugins.api import Driver
from agentplex.supervisor.output import Line, pump_lines
from agentplex.supervisor.process_group import Child

STDERR_TAIL_LINES = 20

Deliver = Callable[["AgentProcess", Stream, list[Line]], None]


@dataclass
class AgentProcess:
    """A spawned agent and what the session tracks about it."""

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

    def open_stdin(
        self, tg: TaskGroup, queue_limit: int, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        """Start feeding the child's stdin from a bounded inbox."""
        assert self.child.stdin is not None
        send, receive = anyio.create_memory_object_stream[bytes](queue_limit)
        self.inbox = send
        tg.start_soon(_feed_stdin, self.child.stdin, receive, log)

    def write(self, data: bytes) -> None:
        """Queue bytes for the child's stdin, refusing when the inbox is full or closed."""
        assert self.inbox is not None
        try:
            self.inbox.send_nowait(data)
        except anyio.WouldBlock:
            raise QueueFull("the agent is not reading its stdin") from None
        except anyio.ClosedResourceError:
            raise SessionEnded("the agent process has ended") from None

    async def run(
        self,
        wait_exit: Callable[[AgentProcess], Awaitable[None]],
        deliver: Deliver,
        *,
        max_line: int,
        drain_timeout: float,
    ) -> None:
        """Read both pipes until the process has exited and its output is drained.

        A leftover descendant may hold the pipes open after the agent exited: reading
        stops ``drain_timeout`` seconds after the exit, whatever remains.
        """
        child = self.child
        try:
            async with anyio.create_task_group() as tg:
                pumps_done = _Countdown(2)
                for fd, stream in ((child.stdout, Stream.STDOUT), (child.stderr, Stream.STDERR)):
                    tg.start_soon(self._pump, fd, stream, deliver, max_line, pumps_done)
                await wait_exit(self)
                with anyio.move_on_after(drain_timeout):
                    await pumps_done.wait()
                tg.cancel_scope.cancel()
        finally:
            os.close(child.stdout)
            os.close(child.stderr)
            if self.inbox is not None:
                self.inbox.close()

    async def _pump(
        self, fd: int, stream: Stream, deliver: Deliver, max_line: int, done: _Countdown
    ) -> None:
        try:
            await pump_lines(fd, max_line, lambda lines: deliver(self, stream, lines))
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
