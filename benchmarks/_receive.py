"""The one subscriber: receive until the last expected line, timing the first and the last.

Each loop is written out for its message format so the subscriber does as little as it
can per message: it is on the same 2 cores as the system it measures.

- ``chunks``: protocol chunk messages (agentplex, the bare per-line pipeline): every
  frame is decoded with the protocol's decoder and its seqs checked per session.
- ``batches``: a frame of JSON lines per message (the bare batched pipeline), decoded
  with ``Decoder.decode_lines``; seqs checked per session.
- ``blobs``: raw bytes per message (circus's PUB stream): newlines are counted.
- ``files``: nothing to subscribe to (file capture): the files' sizes are polled.

Latency variants return, per line, receive time minus the CLOCK_MONOTONIC stamp the
child wrote at the start of the line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import zmq

from agentplex import protocol as p

NS = time.CLOCK_MONOTONIC


@dataclass
class Delivery:
    """What a subscriber got: lines, when the first and last came, seq gaps seen."""

    lines: int = 0
    first: float = 0.0
    last: float = 0.0
    gaps: int = 0
    latencies_ns: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.last - self.first

    def rate(self) -> float | None:
        """Lines per second; None when everything came at once (too small to time)."""
        return self.lines / self.seconds if self.seconds > 0 else None


# --------------------------------------------------------------------------- throughput


def chunks(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    """Protocol chunk messages, ``[topic, json]``, decoded with the protocol's decoder; seq
    checked per session. A message is one chunk or (where the protocol has ``agent.chunks``)
    a batch standing for ``first_seq .. last_seq``."""
    decode, single = p.chunk_decoder.decode, p.Chunk
    recv, poll, again = sub.recv, sub.poll, zmq.Again
    seqs: dict[str, int] = {}
    got = Delivery()
    count = gaps = 0
    while count < expected and poll(int(stall * 1000)):
        if not count:
            got.first = time.perf_counter()
        while True:
            try:
                topic = recv(zmq.NOBLOCK)
            except again:
                break
            payload = recv()
            if topic[0] != 97:  # b"a": agent.chunk.*; skip daemon.sync marks
                continue
            item: Any = decode(payload)
            if type(item) is single:
                first = last = item.seq
            else:
                first, last = item.first_seq, item.last_seq
            sid = item.session_id
            if first != seqs.get(sid, 0) + 1:
                gaps += 1
            seqs[sid] = last
            count += last - first + 1
        got.last = time.perf_counter()
    got.lines, got.gaps = count, gaps
    return got


def texts_of(item: Any) -> list[str]:
    """The line texts of a chunk message (one chunk, or a batch's ``texts``)."""
    return [item.text] if type(item) is p.Chunk else list(item.texts)


_batch_decoder = msgspec.json.Decoder(p.Chunk)


def batches(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    """A frame of JSON lines per message (one pipe read's chunks); seq checked per session."""
    decode_lines = _batch_decoder.decode_lines
    recv, poll, again = sub.recv, sub.poll, zmq.Again
    seqs: dict[str, int] = {}
    got = Delivery()
    count = gaps = 0
    while count < expected and poll(int(stall * 1000)):
        if not count:
            got.first = time.perf_counter()
        while True:
            try:
                recv(zmq.NOBLOCK)
            except again:
                break
            batch = decode_lines(recv())
            sid = batch[0].session_id
            if (
                batch[0].seq != seqs.get(sid, 0) + 1
                or batch[-1].seq != batch[0].seq + len(batch) - 1
            ):
                gaps += 1
            seqs[sid] = batch[-1].seq
            count += len(batch)
        got.last = time.perf_counter()
    got.lines, got.gaps = count, gaps
    return got


def blobs(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    """Raw bytes per message: count the newlines."""
    recv, poll, again = sub.recv, sub.poll, zmq.Again
    got = Delivery()
    count = 0
    while count < expected and poll(int(stall * 1000)):
        if not count:
            got.first = time.perf_counter()
        while True:
            try:
                recv(zmq.NOBLOCK)
            except again:
                break
            count += recv().count(b"\n")
        got.last = time.perf_counter()
    got.lines = count
    return got


def files(
    paths: Callable[[], Sequence[Path]], expected_bytes: int, line_bytes: int, stall: float = 15.0
) -> Delivery:
    """Poll the capture files' sizes every 2 ms until they hold ``expected_bytes``."""
    got = Delivery()
    size, changed = 0, time.perf_counter()
    while size < expected_bytes and time.perf_counter() - changed < stall:
        time.sleep(0.002)
        now_size = sum(_size(path) for path in paths())
        now = time.perf_counter()
        if now_size != size:
            if not size:
                got.first = now
            size, changed, got.last = now_size, now, now
    got.lines = size // line_bytes
    return got


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------- latency


def stamp_of(line: bytes | str) -> int:
    return int(line.split(maxsplit=1)[0])


def chunk_latencies(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    """Protocol chunks whose text starts with the child's monotonic stamp."""
    got = Delivery()
    while got.lines < expected and sub.poll(int(stall * 1000)):
        topic, payload = sub.recv_multipart()
        now = time.clock_gettime_ns(NS)
        if topic.startswith(b"agent.chunk."):
            for text in texts_of(p.chunk_decoder.decode(payload)):
                got.latencies_ns.append(now - stamp_of(text))
                got.lines += 1
    return got


def batch_latencies(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    got = Delivery()
    while got.lines < expected and sub.poll(int(stall * 1000)):
        _topic, payload = sub.recv_multipart()
        now = time.clock_gettime_ns(NS)
        for chunk in _batch_decoder.decode_lines(payload):
            got.latencies_ns.append(now - stamp_of(chunk.text))
            got.lines += 1
    return got


def blob_latencies(sub: zmq.Socket[bytes], expected: int, stall: float = 15.0) -> Delivery:
    """Raw reads per message; a line may be cut across reads, so tails are kept per topic."""
    got = Delivery()
    tails: dict[bytes, bytes] = {}
    while got.lines < expected and sub.poll(int(stall * 1000)):
        topic, payload = sub.recv_multipart()
        now = time.clock_gettime_ns(NS)
        _complete_lines(got, tails, topic, payload, now)
    return got


def _complete_lines(
    got: Delivery, tails: dict[bytes, bytes], key: bytes, data: bytes, now: int
) -> None:
    *lines, tails[key] = (tails.get(key, b"") + data).split(b"\n")
    for line in lines:
        got.latencies_ns.append(now - stamp_of(line))
        got.lines += 1


def file_latencies(paths: Sequence[Path], expected: int, stall: float = 15.0) -> Delivery:
    """Lines appended to capture files, seen through inotify the moment they are written."""
    got = Delivery()
    watcher = _Inotify()
    try:
        watched = {watcher.watch(path): path for path in paths}
        offsets = dict.fromkeys(watched, 0)
        tails: dict[bytes, bytes] = {}
        while got.lines < expected and watcher.wait(stall):
            now = time.clock_gettime_ns(NS)
            for wd in watcher.read():
                with open(watched[wd], "rb") as f:
                    f.seek(offsets[wd])
                    data = f.read()
                offsets[wd] += len(data)
                _complete_lines(got, tails, str(wd).encode(), data, now)
    finally:
        watcher.close()
    return got


class _Inotify:
    """The few inotify calls needed to learn that a file was written (via libc)."""

    IN_MODIFY = 0x2
    IN_NONBLOCK = os.O_NONBLOCK

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def watch(self, path: Path) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_MODIFY)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path} failed")
        return int(wd)

    def wait(self, timeout: float) -> bool:
        return bool(select.select([self.fd], [], [], timeout)[0])

    def read(self) -> set[int]:
        """The watch descriptors with events pending."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return set()
        wds, offset = set(), 0
        while offset < len(data):
            wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            wds.add(wd)
            offset += 16 + length
        return wds

    def close(self) -> None:
        os.close(self.fd)
