"""The daemon's memory is bounded in bytes, whatever agents write and clients fail to read.

ZeroMQ bounds its queues in messages; these tests feed the daemon huge messages (lines
without newlines, lines that JSON escaping makes six times larger, pages of megabyte
chunks) and peers that never read, and watch the daemon's resident memory
(``/proc/<pid>/status``: VmRSS now, VmHWM the peak since it started).
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import msgspec
import zmq
from support import DaemonProcess, next_event

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client
from agentplex.supervisor.bus import Bus, Gap

MiB = 1 << 20
MAX_LINE = MiB
"""The daemon's default ``max_line_bytes``: the most a line takes once logged."""
ENVELOPE = 4096
"""Room for a chunk's fields around its text and base64 in a transcript line."""
PAGE_BYTES = 4 * MiB
"""The daemon's default ``replay_page_bytes``."""
RSS_BOUND = 256 * MiB
"""The stated bound on the daemon's peak resident memory in the acceptance test."""

HOSTILE = bytes(b for b in range(256) if b != 0x0A)
"""Every byte but the newline: control bytes JSON writes as six, quotes and backslashes
as two, and bytes that are not UTF-8 (so each chunk also carries base64)."""


def memory(pid: int) -> dict[str, int]:
    """The daemon's VmRSS and VmHWM (peak) in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def writer(total: int, piece: bytes, *, newline_every: int = 0) -> str:
    """A program that writes ``total`` bytes of ``piece`` repeated, in 64 KiB writes,
    with a newline after every ``newline_every`` bytes (0: none at all)."""
    return (
        "import sys\n"
        f"total, piece, every = {total}, {piece!r}, {newline_every}\n"
        "block = (piece * (65536 // len(piece) + 1))[:65536]\n"
        "out = sys.stdout.buffer\n"
        "written = 0\n"
        "while written < total:\n"
        "    n = min(len(block), total - written, (every - written % every) if every else 65536)\n"
        "    out.write(block[:n])\n"
        "    written += n\n"
        "    if every and written % every == 0:\n"
        "        out.write(b'\\n')\n"
        "out.flush()\n"
    )


def expected_bytes(total: int, piece: bytes) -> bytes:
    block = (piece * (65536 // len(piece) + 1))[:65536]
    return (block * (total // len(block) + 1))[:total]


def chunk_bytes(chunk: p.Chunk) -> bytes:
    """The exact bytes a chunk stands for (its base64 when the line was not UTF-8)."""
    return base64.b64decode(chunk.b64) if chunk.b64 is not None else chunk.text.encode()


def wait_ended(client: Client, session_id: str, timeout: float = 120.0) -> None:
    """Wait for the session's end, with a deadline (the status is read after subscribing,
    so an end that came first is not missed)."""
    with client.subscribe(p.SESSION_TOPIC) as events:
        if client.inspect(session_id).status.ended:
            return
        next_event(
            events,
            lambda e: isinstance(e, p.SessionTerminated) and e.session.id == session_id,
            timeout=timeout,
        )


def raw_request(daemon: DaemonProcess, request: p.Request) -> p.Reply:
    """Send one request on a DEALER of its own and read its reply."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    try:
        dealer.connect(f"ipc://{daemon.runtime_dir}/control.sock")
        dealer.send(p.encode(request))
        assert dealer.poll(20_000), "the daemon did not answer"
        return p.reply_decoder.decode(dealer.recv())
    finally:
        dealer.close(linger=0)
        ctx.term()


@contextmanager
def frozen_subscriber(daemon: DaemonProcess, prefix: bytes) -> Iterator[zmq.Socket[bytes]]:
    """A raw SUB socket that subscribes to ``prefix`` and reads until its subscription is
    live (a sync mark arrives); the block then decides whether it ever reads again."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.RCVBUF, 4096)
    token = secrets.token_hex(8)
    mark = p.topic_of(p.SyncMark(token=token))
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.setsockopt(zmq.SUBSCRIBE, mark)
    sub.connect(f"ipc://{daemon.runtime_dir}/events.sock")
    try:
        deadline = time.monotonic() + 30
        live = False
        while not live:
            assert time.monotonic() < deadline, "the subscription never became live"
            raw_request(daemon, p.Sync(id=1, token=token))
            while not live and sub.poll(100):
                live = sub.recv_multipart()[0] == mark
        yield sub
    finally:
        sub.close(linger=0)
        ctx.term()


class SilentClient:
    """A raw DEALER that sends replay requests and never reads a reply."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.ctx = zmq.Context()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.RCVHWM, 1)
        self.dealer.setsockopt(zmq.RCVBUF, 4096)
        self.dealer.connect(f"ipc://{daemon.runtime_dir}/control.sock")
        self.sent = 0

    def replay(self, session_id: str) -> None:
        self.sent += 1
        request = p.Replay(id=self.sent, session=session_id, from_seq=1, limit=100_000)
        self.dealer.send(p.encode(request))

    def received(self) -> int:
        """Read now what reached this client: the replies the daemon did not drop."""
        count = 0
        while self.dealer.poll(2000):
            self.dealer.recv()
            count += 1
        return count

    def close(self) -> None:
        self.dealer.close(linger=0)
        self.ctx.term()


# ------------------------------------------------------------------ a line, cut before escaping


def test_a_line_of_control_bytes_is_cut_before_escaping_so_no_logged_line_passes_max_line(
    daemon: DaemonProcess, client: Client
) -> None:
    size = 12 * MiB
    info = client.start("exec", argv=[sys.executable, "-c", writer(size, b"\x01")])
    wait_ended(client, info.id)
    with Path(info.transcript).open("rb") as logged:
        longest = max(len(line) for line in logged)
    assert longest <= MAX_LINE + ENVELOPE, f"a transcript line of {longest / MiB:.1f} MiB"
    chunks = list(client.follow(info.id))
    assert b"".join(chunk_bytes(c) for c in chunks) == b"\x01" * size
    assert all(c.partial for c in chunks)


# ------------------------------------------------------------------ replay pages


def test_one_replay_of_a_session_of_huge_chunks_is_a_page_bounded_in_bytes(
    daemon: DaemonProcess, client: Client
) -> None:
    size = 24 * MiB  # about 144 MiB logged
    info = client.start("exec", argv=[sys.executable, "-c", writer(size, b"\x01\x02")])
    wait_ended(client, info.id)
    before = memory(daemon.process.pid)["VmRSS"]
    page = client.replay(info.id, 1, limit=100_000)
    page_bytes = sum(len(raw) for raw in page.chunks)
    assert page_bytes <= PAGE_BYTES, f"a page of {page_bytes / MiB:.0f} MiB"
    assert page.chunks and page.last_seq > len(page.chunks), "the page says more follows"
    peak = memory(daemon.process.pid)["VmHWM"]
    assert peak - before < 64 * MiB, f"the daemon peaked {(peak - before) / MiB:.0f} MiB up"


# ------------------------------------------------------------------ peers that never read


def test_a_client_that_never_reads_its_replay_replies_pins_a_bounded_amount(
    daemon: DaemonProcess, client: Client
) -> None:
    size = 16 * MiB  # 16 chunks of 1 MiB: old pages held all of them, 16 MiB a reply
    info = client.start("exec", argv=[sys.executable, "-c", writer(size, b"x")])
    wait_ended(client, info.id)
    pid = daemon.process.pid
    before = memory(pid)["VmRSS"]
    silent = SilentClient(daemon)
    try:
        for _ in range(40):
            silent.replay(info.id)
            # The daemon has taken the silent client's request by the time it answers a
            # later one of ours: its replies have queued up (or been dropped) meanwhile.
            client.replay(info.id, 1, limit=1)
        for _ in range(8):  # replays run a few at a time: let the last ones finish
            client.replay(info.id, 1, limit=100_000)
        held = memory(pid)
        assert held["VmHWM"] - before < 128 * MiB, (
            f"peak {(held['VmHWM'] - before) / MiB:.0f} MiB above the start"
        )
        assert silent.received() < silent.sent, "replies past the client's budget are dropped"
    finally:
        silent.close()
    assert client.ping().pid == pid
    deadline = time.monotonic() + 30
    # The old daemon kept 1.9 GB; what stays now is the allocator's (freed, not returned).
    while (kept := memory(pid)["VmRSS"] - before) > 96 * MiB:
        assert time.monotonic() < deadline, f"{kept / MiB:.0f} MiB kept after the client left"
        client.ping()  # a request a pass, to let the daemon forget what it held


def test_a_burst_of_requests_from_a_client_that_reads_is_answered_in_full(
    daemon: DaemonProcess,
) -> None:
    """The control socket's queue per client is short (it bounds replay pages in bytes);
    replies past it wait for the client to read, they are not dropped."""

    async def burst() -> int:
        answered = 0
        async with AsyncClient(daemon.runtime_dir, timeout=30) as ac:

            async def one() -> None:
                nonlocal answered
                assert (await ac.ping()).pid == daemon.process.pid
                answered += 1

            async with anyio.create_task_group() as tg:
                for _ in range(3000):
                    tg.start_soon(one)
        return answered

    assert anyio.run(burst) == 3000


def test_a_frozen_subscriber_pins_a_bounded_amount_while_an_agent_prints_mib_lines(
    daemon: DaemonProcess, client: Client
) -> None:
    lines = 300
    program = writer(lines * MiB, b"y", newline_every=MiB)
    pid = daemon.process.pid
    before = memory(pid)["VmRSS"]
    with frozen_subscriber(daemon, p.CHUNK_TOPIC):
        info = client.start("exec", argv=[sys.executable, "-c", program])
        wait_ended(client, info.id)
        held = memory(pid)
        assert held["VmRSS"] - before < 96 * MiB, (
            f"the daemon holds {(held['VmRSS'] - before) / MiB:.0f} MiB for a frozen subscriber"
        )
        texts = [c.text for c in client.follow(info.id)]
    assert texts == ["y" * MiB] * lines
    assert client.ping().pid == pid


def test_a_chunk_too_large_to_publish_is_an_elided_marker_that_follow_replays(
    daemon: DaemonProcess, client: Client
) -> None:
    big = "z" * (512 * 1024)
    program = f"for i in range(6):\n    print('z' * {len(big)} + str(i), flush=True)\n"
    with frozen_subscriber(daemon, p.CHUNK_TOPIC) as sub:
        info = client.start("exec", argv=[sys.executable, "-c", program])
        texts = [c.text for c in client.follow(info.id)]
        published = []
        while len(published) < 6 and sub.poll(10_000):
            event = p.event_decoder.decode(sub.recv_multipart()[1])
            if isinstance(event, p.Chunk | p.ChunkBatch) and event.session_id == info.id:
                published.append(event)
    assert texts == [big + str(i) for i in range(6)]
    assert published, "the markers were published"
    for event in published:
        assert isinstance(event, p.Chunk) and event.elided >= 1 and event.text == ""
    logged = Path(info.transcript).read_bytes()
    assert b'"elided"' not in logged, "markers are for the events socket only"


# ------------------------------------------------------------------ the in-process bus


def test_a_bus_subscriber_that_never_reads_holds_at_most_its_byte_budget() -> None:
    bus = Bus()
    with bus.subscribe(p.CHUNK_TOPIC, max_bytes=8 * MiB) as stalled:
        text = "x" * MiB
        for seq in range(1, 101):
            chunk = p.Chunk(p.ChunkKind.TEXT, text, session_id="s", seq=seq)
            bus.publish(p.chunk_topic("s"), msgspec.json.encode(chunk))
            assert stalled.buffered_bytes <= 8 * MiB
        assert stalled.dropped > 0
        received = []
        while stalled.buffered_bytes or not received or not isinstance(received[-1], Gap):
            received.append(stalled.receive_nowait())
        assert isinstance(received[-1], Gap) and received[-1].first_seq == len(received)


# ------------------------------------------------------------------ all of it at once


def test_acceptance_daemon_memory_stays_bounded_and_follow_gets_every_byte(
    daemon: DaemonProcess, client: Client
) -> None:
    """100 MB without a newline, a frozen subscriber, a client that never reads its
    replays: the daemon stays under RSS_BOUND and follow() yields every byte."""
    size = 100 * 10**6
    pid = daemon.process.pid
    peak_rss = 0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not stop_sampling.wait(0.05):
            peak_rss = max(peak_rss, memory(pid)["VmRSS"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    silent = SilentClient(daemon)
    received = bytearray()
    try:
        with frozen_subscriber(daemon, b""):
            info = client.start("exec", argv=[sys.executable, "-c", writer(size, HOSTILE)])
            for i, chunk in enumerate(client.follow(info.id)):
                received += chunk_bytes(chunk)
                if i % 8 == 0:
                    silent.replay(info.id)
    finally:
        stop_sampling.set()
        sampler.join()
        silent.close()
    peak = memory(pid)["VmHWM"]
    print(
        f"\n100 MB hostile: transcript {os.path.getsize(info.transcript) / MiB:.0f} MiB, "
        f"{silent.sent} unread replays, daemon VmHWM {peak / MiB:.0f} MiB "
        f"(sampled VmRSS peak {peak_rss / MiB:.0f} MiB)"
    )
    assert len(received) == size
    assert bytes(received) == expected_bytes(size, HOSTILE)
    assert peak < RSS_BOUND, f"daemon peaked at {peak / MiB:.0f} MiB"
    assert client.ping().pid == pid
