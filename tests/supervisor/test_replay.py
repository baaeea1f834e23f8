"""Replay and follow: every chunk exactly once, in order, for late and slow subscribers."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client

FLOOD = "import sys\nfor i in range({n}):\n    sys.stdout.write(f'line {{i}}\\n')\n"


def test_a_late_follower_gets_the_whole_history_then_the_end(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.SESSION_TOPIC) as lifecycle:
        info = client.start("exec", argv=[sys.executable, "-c", FLOOD.format(n=20_000)])
        next_event(
            lifecycle,
            lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id,
            timeout=60,
        )
    chunks = list(client.follow(info.id))
    assert [c.seq for c in chunks] == list(range(1, 20_001))
    assert chunks[-1].text == "line 19999"
    assert [c.text for c in client.follow(info.id, 19_999)] == ["line 19998", "line 19999"]


def test_replay_pages_come_from_memory_and_from_disk_alike(client: Client) -> None:
    with client.subscribe(p.SESSION_TOPIC) as lifecycle:
        info = client.start("exec", argv=[sys.executable, "-c", FLOOD.format(n=10_000)])
        next_event(lifecycle, lambda e: isinstance(e, p.SessionTerminated), timeout=60)
    oldest = client.replay(info.id, 1, limit=3)  # long gone from the in-memory ring
    newest = client.replay(info.id, 9_999, limit=3)

    def chunks(page: p.Replayed, from_seq: int) -> list[p.Chunk]:
        return [
            chunk
            for raw in page.chunks
            for chunk in p.expand(p.chunk_decoder.decode(raw))
            if chunk.seq >= from_seq
        ]

    assert [c.text for c in chunks(oldest, 1)[:3]] == ["line 0", "line 1", "line 2"]
    assert [c.seq for c in chunks(newest, 9_999)] == [9_999, 10_000]
    assert (newest.last_seq, newest.ended) == (10_000, True)


def test_a_follower_too_slow_for_the_high_water_mark_still_sees_every_chunk_once(
    short_tmp: Path,
) -> None:
    total = 300_000
    # Small queues on both sides, so that a reader that pauses really loses messages.
    daemon = start_daemon(short_tmp, env={"AGENTPLEX_PUB_HIGH_WATER_MARK": "20"})

    async def scenario() -> tuple[list[p.Chunk], int]:
        async with AsyncClient(daemon.runtime_dir, receive_hwm=10) as client:
            async with (
                client.subscribe(p.SESSION_TOPIC) as lifecycle,
                client.subscribe(p.CHUNK_TOPIC, expand_batches=False) as plain,
            ):
                argv = [sys.executable, "-c", FLOOD.format(n=total)]
                info = await client.start("exec", argv=argv)
                chunks = client.follow(info.id)
                first = await chunks.__anext__()  # subscribed and reading ...
                with anyio.fail_after(120):  # ... then stops reading until the flood is over
                    async for event in lifecycle:
                        if isinstance(event, p.SessionTerminated):
                            break
                rest = [chunk async for chunk in chunks]
                plain_count = 0
                while (event := await plain.receive(0.5)) is not None:
                    plain_count += len(p.expand(event))  # type: ignore[arg-type]
            return [first, *rest], plain_count

    try:
        chunks, plain_count = anyio.run(scenario)
    finally:
        assert daemon.stop() == 0
    assert plain_count < total  # a plain subscriber this slow does lose chunks ...
    assert len(chunks) == total  # ... the follower does not
    assert [c.seq for c in chunks] == list(range(1, total + 1))


def test_a_chunk_of_a_live_session_is_followed_as_it_happens(client: Client) -> None:
    info = client.start("exec", argv=["cat"])
    with client.subscribe(p.chunk_topic(info.id)) as events:
        client.send("one", info.id)
        next_event(events, is_chunk(info.id, text="one"))
    seen = []
    for chunk in client.follow(info.id):
        seen.append(chunk.text)
        if chunk.text == "one":
            client.send("two", info.id)
        if chunk.text == "two":
            client.terminate(info.id)
    assert seen == ["one", "two"]
