"""A subscription to the daemon's events: what :meth:`AsyncClient.subscribe` hands out."""

from __future__ import annotations

import collections

import anyio
import zmq.asyncio

from agentplex import protocol as p


class Subscription:
    """An async iterator over the events of one subscription.

    With ``expand_batches`` (the default) an ``agent.chunks`` batch is handed out as the
    single chunks it stands for; without, as it came.
    """

    def __init__(
        self,
        sub: zmq.asyncio.Socket,
        early: list[p.Event],
        sync_topic: bytes,
        *,
        expand_batches: bool = True,
    ) -> None:
        self._sub = sub
        self._ready: collections.deque[p.Event] = collections.deque()
        self._sync_topic = sync_topic
        self._expand = expand_batches
        for event in early:
            self._queue(event)

    def _queue(self, event: p.Event) -> None:
        if self._expand and isinstance(event, p.ChunkBatch):
            self._ready.extend(event.chunks())
        else:
            self._ready.append(event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> p.Event:
        """The next event (waits as long as it takes)."""
        while not self._ready:
            topic, payload = await self._sub.recv_multipart()
            if topic != self._sync_topic:
                self._queue(p.event_decoder.decode(payload))
        return self._ready.popleft()

    async def next_raw(self) -> tuple[bytes, bytes]:
        """The next event undecoded, its topic and JSON as the daemon published them: for a
        relay that forwards events without reading them (the web dashboard's bridge). Not
        to be mixed with iterating; a batch comes as the batch."""
        if self._ready:  # the few that came before the subscription was live
            event = self._ready.popleft()
            return p.topic_of(event), p.encode(event)
        while True:
            topic, payload = await self._sub.recv_multipart()
            if topic != self._sync_topic:
                return topic, payload

    async def receive(self, timeout: float) -> p.Event | None:
        """The next event, or None if none arrives within ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            return await self.__anext__()
        return None
