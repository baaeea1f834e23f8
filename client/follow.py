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
PAGE_CHUNKS = 10_000
"""Chunks asked for per replay page while pages come back quickly (the daemon also ends a
page at its byte budget)."""
PAGE_TIMEOUT = 2.0
"""Seconds a replay page may take at first; a page that takes longer is asked again
smaller and with more time, up to ``MAX_PAGE_TIMEOUT``."""
MAX_PAGE_TIMEOUT = 30.0

T = TypeVar("T")


async def follow(
    client: AsyncClient, session: str, from_seq: int = 1, *, reconnect_timeout: float = 60.0
) -> AsyncGenerator[p.Chunk, None]:
    """Yield each chunk of ``session`` from ``from_seq`` until the session ends."""
    sid = (await _retrying(lambda: client.inspect(session, timeout=2.0), reconnect_timeout)).id
    topics = (p.chunk_topic(sid), f"session.terminated.{sid}", f"session.status_changed.{sid}")
    state = _Position(from_seq)
    pager = _Pager(client, sid, reconnect_timeout)
    async with client.subscribe(
        *topics, ready_timeout=reconnect_timeout, expand_batches=False
    ) as events:
        async for chunk in _catch_up(pager, state):
            yield chunk
        while not state.ended:
            event = await events.receive(QUIET_CHECK)
            if _behind(event, state):
                async for chunk in _catch_up(pager, state):
                    yield chunk
            if isinstance(event, p.Chunk | p.ChunkBatch):
                for chunk in state.take(event):
                    yield chunk


def _behind(event: p.Event | None, state: _Position) -> bool:
    """Whether ``event`` (None: a quiet spell) means the follower may have missed something."""
    if isinstance(event, p.Chunk) and event.elided:  # too large to publish: replay it
        return event.seq + event.elided > state.next_seq
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
        """The chunks of ``item`` not given out yet, if it continues the sequence (an
        elided marker is not a chunk: it was replayed instead)."""
        if isinstance(item, p.Chunk) and item.elided:
            return []
        new = [chunk for chunk in p.expand(item) if chunk.seq >= self.next_seq]
        if not new or new[0].seq != self.next_seq:
            return []
        self.next_seq = new[-1].seq + 1
        return new


async def _catch_up(pager: _Pager, state: _Position) -> AsyncGenerator[p.Chunk, None]:
    """Replay pages until the follower has everything the daemon has."""
    while True:
        page = await pager.page(state.next_seq)
        for raw in page.chunks:
            for chunk in state.take(p.chunk_decoder.decode(raw)):
                yield chunk
        if state.next_seq > page.last_seq:
            state.ended = page.ended
            return


class _Pager:
    """Asks for replay pages, adapting their size to what the daemon manages in time.

    A page that times out (huge chunks, a loaded daemon, or one that is restarting) is
    asked again for a quarter of the chunks with twice the time; pages that come back
    within a quarter of their time grow back. So a follower always progresses, one chunk
    per page if need be, instead of asking for the same page it never gets in time.
    """

    def __init__(self, client: AsyncClient, sid: str, reconnect_timeout: float) -> None:
        self._client = client
        self._sid = sid
        self._reconnect_timeout = reconnect_timeout
        self.limit = PAGE_CHUNKS
        self.timeout = PAGE_TIMEOUT

    async def page(self, from_seq: int) -> p.Replayed:
        """The page from ``from_seq``, asking until the daemon answers (or
        ``reconnect_timeout`` passes)."""
        with anyio.fail_after(self._reconnect_timeout):
            while True:
                started = anyio.current_time()
                try:
                    page = await self._client.replay(
                        self._sid, from_seq, limit=self.limit, timeout=self.timeout
                    )
                except RequestTimeout:
                    self.limit = max(1, self.limit // 4)
                    self.timeout = min(self.timeout * 2, MAX_PAGE_TIMEOUT)
                except DaemonNotRunning:
                    await anyio.sleep(RETRY_DELAY)
                else:
                    self._took(anyio.current_time() - started)
                    return page

    def _took(self, seconds: float) -> None:
        if seconds < self.timeout / 4:
            self.limit = min(PAGE_CHUNKS, self.limit * 2)
            self.timeout = max(PAGE_TIMEOUT, self.timeout / 2)


async def _retrying(request: Callable[[], Awaitable[T]], reconnect_timeout: float) -> T:
    """Ask until the daemon answers: while it is away (restarting) requests time out."""
    with anyio.fail_after(reconnect_timeout):
        while True:
            try:
                return await request()
            except (RequestTimeout, DaemonNotRunning):
                await anyio.sleep(RETRY_DELAY)
