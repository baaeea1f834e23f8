"""Replies on the control ROUTER socket: what a client that does not read can pin is
bounded in bytes, and a burst to one that does read is never dropped.

ZeroMQ bounds a peer's queue in messages (SNDHWM), whatever their size; the control
socket's mark is set low enough that it holds at most ``client_buffer_bytes`` of the
largest replies (``bounds.control_send_hwm``, 15 replay pages). With
``ZMQ_ROUTER_MANDATORY`` a send to a full queue fails (``EAGAIN``) instead of being
dropped unseen: the reply then waits here, in order behind that client's other waiting
replies, and a task per such client retries as its queue drains (a client reading a
burst of a thousand small replies catches up in milliseconds). Waiting replies are
bounded too, in bytes and in number, for all clients together; past that, and for a
client that has read nothing for ``PATIENCE`` seconds, replies are dropped (with a log
line): a client that never reads loses its replies, which is its problem, not the
daemon's memory.
"""

from __future__ import annotations

import collections
import errno
from typing import Final

import anyio
import structlog
import zmq
import zmq.asyncio
from anyio.abc import TaskGroup

log = structlog.get_logger(__name__)

PATIENCE: Final = 10.0
"""Seconds a client's waiting replies wait for its queue to move before they are dropped."""
MAX_WAITING: Final = 65_536
"""Replies waiting for all clients together (small replies cost more than bytes)."""
FIRST_RETRY: Final = 0.001
LAST_RETRY: Final = 0.05
"""Retry delays while a client's queue is full: doubling from the first to the last."""


class Outbox:
    """Sends each reply at once if its client's queue has room, else keeps it waiting."""

    def __init__(self, socket: zmq.asyncio.Socket, tg: TaskGroup, max_bytes: int) -> None:
        self._socket = socket
        self._tg = tg
        self.max_bytes = max_bytes
        """Bytes of replies that may wait, for all clients together."""
        self.waiting_bytes = 0
        self._waiting: dict[bytes, collections.deque[bytes]] = {}
        self._count = 0
        self.dropped = 0
        """Replies dropped because their client did not read them."""

    async def send(self, identity: bytes, frame: bytes) -> None:
        """Send ``frame`` to the client ``identity`` now, or leave it waiting; never blocks."""
        queue = self._waiting.get(identity)
        if queue is None:
            try:
                await self._socket.send_multipart((identity, frame), flags=zmq.NOBLOCK)
                return
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                _gone(exc)
                return
        self._wait(identity, frame)

    def _wait(self, identity: bytes, frame: bytes) -> None:
        if self.waiting_bytes + len(frame) > self.max_bytes or self._count >= MAX_WAITING:
            self.dropped += 1
            log.warning("reply_dropped", client=identity.hex(), bytes=len(frame))
            return
        queue = self._waiting.get(identity)
        if queue is None:
            queue = self._waiting[identity] = collections.deque()
            self._tg.start_soon(self._drain, identity, queue)
        queue.append(frame)
        self.waiting_bytes += len(frame)
        self._count += 1

    async def _drain(self, identity: bytes, queue: collections.deque[bytes]) -> None:
        """Send a client's waiting replies in order as its queue makes room."""
        delay, stalled_since = FIRST_RETRY, anyio.current_time()
        try:
            while queue:
                await anyio.sleep(delay)
                moved = await self._send_waiting(identity, queue)
                if moved is None:  # the client is gone: ``_forget`` drops the rest
                    return
                if moved:
                    delay, stalled_since = FIRST_RETRY, anyio.current_time()
                elif anyio.current_time() - stalled_since > PATIENCE:
                    self.dropped += len(queue)
                    log.warning("replies_dropped", client=identity.hex(), count=len(queue))
                    return
                else:
                    delay = min(delay * 2, LAST_RETRY)
        finally:
            self._forget(identity, queue)

    async def _send_waiting(self, identity: bytes, queue: collections.deque[bytes]) -> bool | None:
        """Send what the client's queue takes; whether anything went (None: the client
        has disconnected)."""
        sent = False
        while queue:
            try:
                await self._socket.send_multipart((identity, queue[0]), flags=zmq.NOBLOCK)
            except zmq.Again:
                return sent
            except zmq.ZMQError as exc:
                _gone(exc)
                return None
            frame = queue.popleft()
            self.waiting_bytes -= len(frame)
            self._count -= 1
            sent = True
        return sent

    def _forget(self, identity: bytes, queue: collections.deque[bytes]) -> None:
        """The client's drain is over: whatever still waits is dropped."""
        self.waiting_bytes -= sum(len(frame) for frame in queue)
        self._count -= len(queue)
        queue.clear()
        del self._waiting[identity]


def _gone(exc: zmq.ZMQError) -> None:
    """A reply to a client that has disconnected (``EHOSTUNREACH``) is dropped."""
    if exc.errno != errno.EHOSTUNREACH:
        raise exc
