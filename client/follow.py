"""Following a session: every chunk exactly once, in seq order, whatever happens.

The zguide "Clone" pattern: subscribe first, then replay history from the daemon, then
merge the live stream, dropping what was already seen and replaying any gap. Gaps come
from a late start, from a subscriber too slow for the daemon's high-water mark, or from
a daemon restart; a quiet stream is checked with a replay now and then, so a lost tail
or a missed end is noticed too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from agentplex import protocol as p
from agentplex.protocol.errors import DaemonNotRunning, RequestTimeout

if TYPE_CHECKING:
    from agentplex.client.async_client import AsyncClient

QUIET_CHECK = 2.0
"""Seconds without a chunk after which the follower asks the daemon where it stands."""
RETRY_DELAY = 0.2

T = TypeVar("T")


async def follow(
    client: AsyncClient, session: str, from_seq: int = 1, *, reconnect_timeout: float = 60.0
) -> AsyncGenerator[p.Chunk, None]:
    """Yield each chunk of ``session`` from ``from_seq`` until the session ends."""
    sid = (await _retrying(lambda: client.inspect(session, timeout=2.0), reconnect_timeout)).id
    topics = (p.chunk_topic(sid), f"session.terminated.{sid}", f"session.status_changed.{sid}")
    state = _Position(from_seq)
    async with client.subscribe(
        *topics, ready_timeout=reconnect_timeout, expand_batches=False
    ) as events:
        async for chunk in _catch_up(client, sid, state, reconnect_timeout):
            yield chunk
        while not state.ended:
            event = await events.receive(QUIET_CHECK)
            if _behind(event, state):
                async for chunk in _catch_up(client, sid, state, reconnect_timeout):
                    yield chunk
            if isinstance(event, p.Chunk | p.ChunkBatch):
                for chunk in state.take(event):
                    yield chunk


def _behind(event: p.Event | None, state: _Position) -> bool:
    """Whether ``event`` (None: a quiet spell) means the follower may have missed something."""
    if isinstance(event, p.Chunk):
        return event.seq > state.next_seq
    if isinstance(event, p.ChunkBatch):
        return event.first_seq > state.next_seq
    return event is None or isinstance(event, p.SessionTerminated | p.StatusChanged)


class _Position:
    """The next seq the follower gives out, and whether the stream has ended."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = max(next_seq, 1)
        self.ended = False

    def take(self, item: p.AnyChunk) -> list[p.Chunk]:
        """The chunks of ``item`` not given out yet, if it continues the sequence."""
        new = [chunk for chunk in p.expand(item) if chunk.seq >= self.next_seq]
        if not new or new[0].seq != self.next_seq:
            return []
        self.next_seq = new[-1].seq + 1
        return new


async def _catch_up(
    client: AsyncClient, sid: str, state: _Position, reconnect_timeout: float
) -> AsyncGenerator[p.Chunk, None]:
    """Replay pages until the follower has everything the daemon has."""
    while True:
        page = await _replay_page(client, sid, state.next_seq, reconnect_timeout)
        for raw in page.chunks:
            for chunk in state.take(p.chunk_decoder.decode(raw)):
                yield chunk
        if state.next_seq > page.last_seq:
            state.ended = page.ended
            return


async def _replay_page(
    client: AsyncClient, sid: str, from_seq: int, reconnect_timeout: float
) -> p.Replayed:
    return await _retrying(lambda: client.replay(sid, from_seq, timeout=2.0), reconnect_timeout)


async def _retrying(request: Callable[[], Awaitable[T]], reconnect_timeout: float) -> T:
    """Ask until the daemon answers: while it is away (restarting) requests time out."""
    with anyio.fail_after(reconnect_timeout):
        while True:
            try:
                return await request()
            except (RequestTimeout, DaemonNotRunning):
                await anyio.sleep(RETRY_DELAY)
