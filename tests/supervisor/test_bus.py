"""The in-process bus: every event to every consumer, in order; a slow subscriber loses
messages (bounded memory, then a Gap marker that replay fills), never the publisher's time."""

from __future__ import annotations

import collections
import gc
import inspect
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import anyio
import zmq
from support import session_info

from agentplex import protocol as p
from agentplex.plugins.api import Driver
from agentplex.supervisor.bus import MAX_BYTES, MAX_MESSAGES, Bus, Gap, Message, Subscription
from agentplex.supervisor.chunks import ChunkStream
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.history import ChunkHistory
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.output import Line
from agentplex.supervisor.pub_sink import PubSink
from agentplex.supervisor.transcript import Transcript

RING_BYTES = 1 << 20
LINE = "x" * 99  # 100 bytes with its newline
READ = 640  # lines per read: a 64 KiB pipe read


def chunk_stream(tmp: Path, events: EventPublisher, session_id: str = "s1") -> ChunkStream:
    path = tmp / f"{session_id}.jsonl"
    history = ChunkHistory(path, ring_chunks=4096, ring_bytes=RING_BYTES)
    return ChunkStream(session_id, Transcript(path), events, history, Metrics(["exec"]), "exec")


def write(stream: ChunkStream, texts: Sequence[str]) -> None:
    """One read of plain stdout lines, delivered as a session delivers it."""
    lines: list[Line] = [(text.encode(), False) for text in texts]
    stream.publish_lines(lines, p.Stream.STDOUT, Driver(), 1, collections.deque(maxlen=10))


def seqs_of(payload: bytes) -> list[int]:
    return [chunk.seq for chunk in p.expand(p.chunk_decoder.decode(payload))]


def drain(subscription: Subscription) -> list[Message | Gap]:
    """Everything buffered right now, without waiting."""
    items: list[Message | Gap] = []
    while True:
        try:
            items.append(subscription.receive_nowait())
        except anyio.WouldBlock:
            return items


def test_a_subscriber_sees_every_event_in_order_as_the_sinks_do(tmp_path: Path) -> None:
    bus = Bus()
    sent: list[tuple[bytes, bytes]] = []
    bus.attach(lambda topic, payloads: sent.extend((topic, payload) for payload in payloads))
    events = EventPublisher(bus)
    everything = bus.subscribe()
    stream = chunk_stream(tmp_path, events)

    events.created(session_info("s1"))
    write(stream, ["one", "two", "three"])  # a batch: one message, seqs 1..3
    write(stream, ["cut \xff", "four"])  # still plain text: another batch
    stream.publish_one(p.Chunk(p.ChunkKind.ERROR, "oops"), 1)  # a single chunk, seq 6
    events.status_changed(session_info("s1", status=p.SessionStatus.IDLE), p.SessionStatus.RUNNING)
    events.heartbeat(1, 1)
    events.sync("token")

    received = drain(everything)
    assert all(isinstance(item, Message) for item in received)
    messages = cast(list[Message], received)
    assert [(m.topic, m.payload) for m in messages] == sent
    assert [type(m.event) for m in messages] == [
        p.SessionCreated,
        p.ChunkBatch,
        p.ChunkBatch,
        p.Chunk,
        p.StatusChanged,
        p.Heartbeat,
        p.SyncMark,
    ]
    assert [s for m in messages[1:4] for s in seqs_of(m.payload)] == [1, 2, 3, 4, 5, 6]
    assert all(m.topic == p.topic_of(m.event) for m in messages)


def test_a_message_is_decoded_only_when_its_event_is_asked_for() -> None:
    bus = Bus()
    subscription = bus.subscribe()
    bus.publish(p.chunk_topic("s1"), b"not json")  # undecodable, yet nobody pays for it
    event = p.SyncMark(token="t")
    bus.publish(p.topic_of(event), p.encode(event))

    first, second = drain(subscription)
    assert isinstance(first, Message) and first.payload == b"not json"
    assert isinstance(second, Message)
    assert second.event == event
    assert second.event is second.event  # decoded once


def test_a_subscriber_gets_only_the_topics_under_its_prefix(tmp_path: Path) -> None:
    bus = Bus()
    events = EventPublisher(bus)
    lifecycle = bus.subscribe(p.SESSION_TOPIC)
    one_session = bus.subscribe(p.chunk_topic("s1"))
    all_chunks = bus.subscribe(p.CHUNK_TOPIC)
    s1, s2 = chunk_stream(tmp_path, events, "s1"), chunk_stream(tmp_path, events, "s2")

    events.created(session_info("s1"))
    write(s1, ["a"])
    write(s2, ["b"])
    events.active_changed("s2")
    events.heartbeat(1, 2)

    def topics(subscription: Subscription) -> list[bytes]:
        return [cast(Message, m).topic for m in drain(subscription)]

    assert topics(lifecycle) == [b"session.created.s1", b"session.active_changed"]
    assert topics(one_session) == [b"agent.chunk.s1"]
    assert topics(all_chunks) == [b"agent.chunk.s1", b"agent.chunk.s2"]


def test_a_stalled_subscriber_costs_at_most_its_budget_then_a_gap_that_replay_fills(
    tmp_path: Path,
) -> None:
    bus = Bus()
    stream = chunk_stream(tmp_path, EventPublisher(bus))
    reader = bus.subscribe(p.CHUNK_TOPIC)
    flood_bytes = 50 << 20
    reads = flood_bytes // (READ * (len(LINE) + 1))

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        most_buffered = 0
        for _ in range(reads):  # nobody reads meanwhile
            write(stream, [LINE] * READ)
            most_buffered = max(most_buffered, reader.buffered_bytes)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    total = stream.seq
    assert total == reads * READ
    assert reader.dropped > 0
    assert MAX_BYTES - (64 << 10) < most_buffered <= MAX_BYTES
    # The flood was 50 MB; what stays is the budget plus the replay ring (plus change).
    assert held < MAX_BYTES + RING_BYTES + (2 << 20)

    async def read_and_fill() -> list[int]:
        seen: list[int] = []
        with anyio.fail_after(30):
            while not isinstance(item := await reader.receive(), Gap):
                seen.extend(seqs_of(item.payload))
            assert item == Gap(session_id="s1", first_seq=seen[-1] + 1)
            upto = stream.seq  # everything after this arrives live again
            write(stream, ["after the gap"])
            at = item.first_seq
            while at <= upto:
                for payload in await stream.replay(at, 10_000):
                    seen.extend(s for s in seqs_of(payload) if at <= s <= upto)
                at = seen[-1] + 1
            live = await reader.receive()
            assert isinstance(live, Message)
            seen.extend(seqs_of(live.payload))
        return seen

    assert anyio.run(read_and_fill) == list(range(1, total + 2))
    assert reader.buffered_bytes == 0


def test_a_gap_comes_where_the_loss_was_and_names_each_session_and_lost_events() -> None:
    bus = Bus()
    events = EventPublisher(bus)
    reader = bus.subscribe(max_messages=3)

    def chunk(session_id: str, seq: int) -> None:
        c = p.Chunk(p.ChunkKind.TEXT, "t", session_id=session_id, seq=seq, stream=p.Stream.STDOUT)
        events.publish_chunks(session_id, [p.encode(c)])

    chunk("a", 1)
    chunk("b", 1)
    events.heartbeat(1, 2)  # the queue is full: what follows is lost
    chunk("b", 2)
    chunk("a", 2)
    chunk("a", 3)
    events.sync("x")
    assert reader.dropped == 4

    first = drain(reader)
    assert [type(i) for i in first] == [Message, Message, Message, Gap, Gap, Gap]
    assert first[3:] == [
        Gap(session_id="b", first_seq=2),
        Gap(session_id="a", first_seq=2),
        Gap(session_id=None, events=1),
    ]
    chunk("a", 4)  # the gap was read: live again
    (live,) = drain(reader)
    assert isinstance(live, Message) and seqs_of(live.payload) == [4]


def test_a_message_bigger_than_the_budget_is_a_gap_not_a_stall() -> None:
    bus = Bus()
    reader = bus.subscribe(max_bytes=100)
    big = p.Chunk(p.ChunkKind.TEXT, "x" * 200, session_id="s", seq=7, stream=p.Stream.STDOUT)
    bus.publish(p.chunk_topic("s"), p.encode(big))
    assert drain(reader) == [Gap(session_id="s", first_seq=7)]
    assert reader.buffered_bytes == 0


def test_a_stalled_subscriber_never_slows_publishing(tmp_path: Path) -> None:
    assert not inspect.iscoroutinefunction(Bus.publish_many)  # it cannot wait for anyone
    payloads = [b'{"type":"agent.chunk","seq":1}'] * 4
    count = 20_000

    def per_publish(bus: Bus) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(count):
                bus.publish_many(b"agent.chunk.s1", payloads)
            best = min(best, (time.perf_counter() - start) / count)
        return best

    alone = Bus()
    alone.attach(lambda topic, payloads: None)
    stalled = Bus()
    stalled.attach(lambda topic, payloads: None)
    reader = stalled.subscribe(max_messages=1_000)

    baseline, with_stalled = per_publish(alone), per_publish(stalled)
    assert reader.dropped >= 5 * count * len(payloads) - 1_000
    assert len(drain(reader)) == 1_000 + 1  # what fitted, then one gap
    # Dropping is a few dict lookups per publish, whatever the flood: well under the
    # microseconds a PUB send costs.
    assert with_stalled < baseline * 5 + 2e-6, (baseline, with_stalled)


def test_the_subscriber_waits_for_the_next_message_and_ends_with_the_bus() -> None:
    bus = Bus()
    reader = bus.subscribe()
    event = p.SyncMark(token="later")

    async def scenario() -> list[Message | Gap]:
        received: list[Message | Gap] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    received.extend([item async for item in reader])

                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                bus.publish(p.topic_of(event), p.encode(event))
                bus.close()
        return received

    (only,) = anyio.run(scenario)
    assert isinstance(only, Message) and only.event == event


class FakeSocket:
    """What PubSink uses of a PUB socket."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send_multipart(self, frames: tuple[bytes, bytes], flags: int = 0) -> None:
        assert flags == zmq.NOBLOCK  # a PUB sink never waits
        self.sent.append(frames)


def test_the_pub_sink_sends_everything_and_one_list_change_per_burst() -> None:
    bus = Bus()
    socket = FakeSocket()
    snapshots = 0

    def snapshot() -> tuple[list[p.SessionInfo], str | None]:
        nonlocal snapshots
        snapshots += 1
        return [session_info("s1")], "s1"

    async def scenario() -> list[Message | Gap]:
        sink = PubSink(cast("zmq.Socket[bytes]", socket), snapshot, interval=0.05)
        sink.attach(bus)
        events = EventPublisher(bus)
        lifecycle = bus.subscribe(b"session.list_changed")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.run)
            events.created(session_info("s1"))
            for _ in range(100):  # e.g. the limit watch's samples
                events.list_changed()
            events.publish_chunks("s1", [b"{}", b"{}"])
            with anyio.fail_after(5):
                first = await lifecycle.receive()
            events.list_changed()
            with anyio.fail_after(5):
                second = await lifecycle.receive()
            tg.cancel_scope.cancel()
        return [first, second]

    first, second = anyio.run(scenario)
    assert snapshots == 2
    assert isinstance(first, Message) and isinstance(first.event, p.SessionListChanged)
    assert first.event.active == "s1"
    assert isinstance(second, Message) and isinstance(second.event, p.SessionListChanged)
    assert [topic for topic, _ in socket.sent] == [
        b"session.created.s1",
        b"agent.chunk.s1",
        b"agent.chunk.s1",
        b"session.list_changed",
        b"session.list_changed",
    ]


def test_the_default_budget_is_the_documented_one() -> None:
    subscription = Bus().subscribe()
    assert (subscription.max_bytes, subscription.max_messages) == (8 << 20, 65_536)
    assert (MAX_BYTES, MAX_MESSAGES) == (8 << 20, 65_536)
