"""A subscriber that stops reading slows nobody, and costs the daemon bounded memory."""

from __future__ import annotations

import sys
import time

import anyio
import psutil
import zmq
from support import DaemonProcess, next_event

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client

LINES = 400_000
FLOOD = f"import sys\nfor i in range({LINES}):\n    sys.stdout.write(f'{{i:>99}}\\n')\n"
BOUND = 128 * 2**20
"""Stated bound on the daemon's growth under this flood with one stalled subscriber: the
PUB queue for it (``subscriber_buffer_bytes``, 64 MiB by default: 512 messages of at most
``pub_max_message_bytes``) plus the replay ring, replay pages and read buffers."""


def test_a_stalled_subscriber_neither_slows_the_flood_nor_grows_the_daemon_unbounded(
    daemon: DaemonProcess, client: Client
) -> None:
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)  # reads nothing: everything queues at the daemon
    stalled.setsockopt(zmq.SUBSCRIBE, p.CHUNK_TOPIC)
    stalled.connect(f"ipc://{daemon.runtime_dir}/events.sock")
    daemon_proc = psutil.Process(daemon.process.pid)
    rss_before = daemon_proc.memory_info().rss
    peak = rss_before

    async def read_everything() -> tuple[int, float]:
        nonlocal peak
        async with AsyncClient(daemon.runtime_dir) as reader:
            info = await reader.start("exec", argv=[sys.executable, "-c", FLOOD])
            started = time.monotonic()
            count = 0
            async for _chunk in reader.follow(info.id):
                count += 1
                if count % 20_000 == 0:
                    peak = max(peak, daemon_proc.memory_info().rss)
            return count, time.monotonic() - started

    try:
        count, seconds = anyio.run(read_everything)
    finally:
        stalled.close()
        ctx.term()
    assert count == LINES
    growth = peak - rss_before
    print(f"\nflood: {LINES} chunks in {seconds:.1f} s, daemon grew {growth / 2**20:.0f} MiB")
    assert growth < BOUND, f"daemon grew by {growth / 2**20:.0f} MiB"
    assert client.ping().pid == daemon.process.pid
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=["true"])
        next_event(events, lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id)
