"""The daemon's in-process bus: every event, once encoded, to every consumer.

Messages are the protocol's events as they go on the wire: a topic (``topic_of`` /
``chunk_topic``) and the event's JSON, encoded once by whoever publishes (chunks by the
hot path, which also logs the same bytes). Publishing is synchronous, never awaits and
never waits for a consumer. Two kinds of consumers:

- **sinks**, attached at start-up (the ZeroMQ PUB socket is one): called on the
  publisher's stack with ``(topic, payloads)`` for every publish, so every message, in
  order; a read's chunks come as one call (no call per chunk on the hot path). A sink must
  neither block nor raise.
- **subscribers**: :meth:`Bus.subscribe` returns a :class:`Subscription` of the messages
  whose topic starts with a prefix, buffered for the subscriber's own task. Each yields a
  :class:`Message` (topic, bytes, and the :class:`Event` decoded only when asked for), or
  a :class:`Gap` marker.

Overflow policy. Each subscription holds at most ``max_bytes`` of payloads (default 8 MiB)
and ``max_messages`` messages (default 65,536). A message that would go past either bound
is dropped for that subscriber only, and so is every later one until the subscriber has
read everything buffered before the first loss: then it receives :class:`Gap` markers (one
per session that lost chunks, naming the first lost seq; one for the other events lost)
and live messages again. Dropping whole stretches (rather than whatever happens not to
fit) keeps a gap one contiguous run of seqs per session, which one replay from
``first_seq`` fills (``ChunkStream.replay`` in the daemon, the ``replay`` request outside).
So a stalled subscriber costs at most its budget, and publishing costs the same whether
it reads or not.

Markers (:meth:`Bus.mark`) are not messages: a name with no payload that reaches only the
callbacks that asked for it (e.g. "the session list changed", which the PUB sink turns into
one ``session.list_changed`` per burst).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Final

import anyio
import anyio.lowlevel
import msgspec

from agentplex.protocol import CHUNK_TOPIC, Event, event_decoder

Frames = tuple[bytes, bytes]
"""A message as it goes on the wire: its topic frame and its JSON frame."""
Sink = Callable[[bytes, Sequence[bytes]], object]
"""Called with a topic and the payloads published under it in one go (usually one); must
not block (it runs inside ``publish``)."""

MAX_BYTES: Final = 8 << 20
"""A subscription's default budget of buffered payload bytes."""
MAX_MESSAGES: Final = 65_536
"""A subscription's default bound on buffered messages (tiny messages cost more than bytes)."""


class Message(msgspec.Struct, frozen=True, dict=True):
    """One message a subscriber receives: the bytes published, decoded on demand."""

    topic: bytes
    payload: bytes

    @cached_property
    def event(self) -> Event:
        """The event, decoded on first access (most consumers forward the bytes as they are)."""
        return event_decoder.decode(self.payload)


class Gap(msgspec.Struct, frozen=True):
    """Messages this subscriber lost, in the place of the stream where they were lost.

    For a session's chunks, ``first_seq`` is the first chunk lost: every chunk of the
    session from there up to the next one received was lost (replay fills them). With
    ``session_id`` None, ``events`` counts the other events lost (lifecycle, heartbeats):
    ask for the session list again.
    """

    session_id: str | None
    first_seq: int = 0
    events: int = 0


class _Seq(msgspec.Struct):
    """Just enough of a chunk message to name its first seq."""

    seq: int = 0
    first_seq: int = 0


_decode_seq = msgspec.json.Decoder(_Seq).decode


def _first_seq(payload: bytes) -> int:
    """The first seq of a chunk message; 0 (replay from the start) if it cannot be read."""
    try:
        seqs = _decode_seq(payload)
    except msgspec.DecodeError:
        return 0
    return seqs.first_seq or seqs.seq


class _Loss:
    """What a subscription has dropped since it overflowed; becomes Gap markers."""

    __slots__ = ("chunks", "events")

    def __init__(self) -> None:
        self.chunks: dict[bytes, int] = {}
        """Chunk topic -> first seq lost (keyed by topic: no decoding on the drop path)."""
        self.events = 0

    def add(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        """Only the first lost chunk of a session is looked into; the rest are just counted."""
        if not topic.startswith(CHUNK_TOPIC):
            self.events += len(payloads)
        elif topic not in self.chunks:
            self.chunks[topic] = _first_seq(payloads[0])

    def gaps(self) -> list[Gap]:
        found = [
            Gap(session_id=topic[len(CHUNK_TOPIC) :].decode(), first_seq=seq)
            for topic, seq in self.chunks.items()
        ]
        if self.events:
            found.append(Gap(session_id=None, events=self.events))
        return found


class Subscription:
    """A bounded buffer of the bus's messages under one prefix, read by one task."""

    def __init__(self, bus: Bus, prefix: bytes, max_bytes: int, max_messages: int) -> None:
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.buffered_bytes = 0
        """Payload bytes held for the subscriber right now (never above ``max_bytes``)."""
        self.dropped = 0
        """Messages dropped in total because the subscriber fell behind."""
        self._bus = bus
        self._queue: collections.deque[Frames | _Loss | Gap] = collections.deque()
        self._loss: _Loss | None = None
        self._waiter: anyio.Event | None = None
        self._closed = False

    def offer(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        """Called by the bus with messages of one topic: buffer them, or drop them."""
        if self._loss is None:
            for i, payload in enumerate(payloads):
                size = len(payload)
                if (
                    self.buffered_bytes + size > self.max_bytes
                    or len(self._queue) >= self.max_messages
                ):
                    self._overflow(topic, payloads[i:])
                    break
                self._queue.append((topic, payload))
                self.buffered_bytes += size
        else:
            self._loss.add(topic, payloads)
            self.dropped += len(payloads)
        if self._waiter is not None:
            self._waiter.set()

    def _overflow(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        # The loss record takes its place in the queue: the gap is reported exactly where
        # the stream broke, after what was buffered before it.
        self._loss = _Loss()
        self._queue.append(self._loss)
        self._loss.add(topic, payloads)
        self.dropped += len(payloads)

    def receive_nowait(self) -> Message | Gap:
        """The next message or gap; raises :class:`anyio.WouldBlock` if there is none yet."""
        if not self._queue:
            if self._closed:
                raise anyio.EndOfStream
            raise anyio.WouldBlock
        item = self._queue.popleft()
        if isinstance(item, tuple):
            self.buffered_bytes -= len(item[1])
            return Message(item[0], item[1])
        if isinstance(item, _Loss):
            # Everything before the loss has been read: take messages again from here.
            self._loss = None
            first, *rest = item.gaps()
            self._queue.extendleft(reversed(rest))
            return first
        return item

    async def receive(self) -> Message | Gap:
        """The next message or gap, waiting for one; :class:`anyio.EndOfStream` once the
        bus is closed and everything is read."""
        await anyio.lowlevel.checkpoint()  # a busy reader still lets the publishers run
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                self._waiter = waiter = anyio.Event()
                try:
                    await waiter.wait()
                finally:
                    self._waiter = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving: the bus forgets this subscription and what it buffered."""
        self._bus.unsubscribe(self)
        self._queue.clear()
        self.buffered_bytes = 0
        self._end()

    def _end(self) -> None:
        self._closed = True
        if self._waiter is not None:
            self._waiter.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Bus:
    """Publish/subscribe of encoded events inside the daemon (see the module docstring)."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._subscriptions: list[Subscription] = []
        self._marks: dict[str, list[Callable[[], object]]] = {}

    def attach(self, sink: Sink) -> None:
        """Add a sink: it gets every message from now on."""
        self._sinks.append(sink)

    def subscribe(
        self, prefix: bytes = b"", *, max_bytes: int = MAX_BYTES, max_messages: int = MAX_MESSAGES
    ) -> Subscription:
        """Buffer the messages whose topic starts with ``prefix`` for one reader, from now on."""
        subscription = Subscription(self, prefix, max_bytes, max_messages)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Hand one encoded event to every sink and matching subscriber. Never blocks."""
        self.publish_many(topic, (payload,))

    def publish_many(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        """Publish encoded events of one topic (one read's chunks), in order. Never blocks."""
        # One call per sink, not per message: with no subscriber this costs what the PUB
        # socket's own loop costs (the hot path publishes about a million chunks a second).
        for sink in self._sinks:
            sink(topic, payloads)
        if self._subscriptions:
            for subscription in self._subscriptions:
                if topic.startswith(subscription.prefix):
                    subscription.offer(topic, payloads)

    def on_mark(self, name: str, callback: Callable[[], object]) -> None:
        """Call ``callback`` (which must not block) whenever ``name`` is marked."""
        self._marks.setdefault(name, []).append(callback)

    def mark(self, name: str) -> None:
        """Tell whoever watches ``name`` that it happened; no message is published."""
        for callback in self._marks.get(name, ()):
            callback()

    def close(self) -> None:
        """End every subscription once it has read what it holds (the daemon is stopping)."""
        for subscription in self._subscriptions:
            subscription._end()
        self._subscriptions.clear()

    def subscriptions(self) -> Iterator[Subscription]:
        """The live subscriptions (for metrics and tests)."""
        return iter(tuple(self._subscriptions))
