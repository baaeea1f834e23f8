"""The raw limits: what the same work costs with nothing but the pieces it is made of.

- ``pipe``: the children write into pipes read by a bare Python reader (in the benchmark
  process; nothing is published): how fast the children and the pipes go.
- ``zmq``: the same chunk messages, encoded beforehand, through a bare pyzmq PUB -> SUB
  (the publisher is ``python _bare.py zmq ...``): how fast one subscriber takes them.
- ``pipeline``: one process doing what a supervisor must do (``python _bare.py
  line|batch ENDPOINT OUT_DIR ARGVS_JSON``): read the pipes -> split lines -> encode a
  protocol Chunk (msgspec, encoder built once) -> append to a per-session file -> PUB ->
  the SUB here. ``line`` does one write and one message per line; ``batch`` one write
  and one message (the same JSON lines) per pipe read, each chunk keeping its own seq;
  ``batchmsg`` (where the protocol has it) one ``agent.chunks`` message per read, the
  daemon's own batch format.

The publishers use XPUB and say ``ready`` on stdout once a subscription has arrived, so
the benchmark releases the children only when nothing can be lost to the slow joiner.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import zmq

from agentplex import protocol as p

READ_SIZE = 1 << 16


# --------------------------------------------------------------------------- in the harness


class PipeReader:
    """The children's pipes read by a bare Python reader: counts newlines, nothing else."""

    def __init__(self, argvs: Sequence[list[str]]) -> None:
        self.children = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            for argv in argvs
        ]

    def read(self, expected: int) -> tuple[float, float, int]:
        """Read until every pipe is at EOF: (first read, last read, lines)."""
        selector = selectors.DefaultSelector()
        for child in self.children:
            assert child.stdout is not None
            selector.register(child.stdout.fileno(), selectors.EVENT_READ)
        lines, first, last = 0, 0.0, 0.0
        open_fds = len(self.children)
        while open_fds:
            for key, _ in selector.select():
                data = os.read(key.fd, READ_SIZE)
                if not data:
                    selector.unregister(key.fd)
                    open_fds -= 1
                    continue
                if not lines:
                    first = time.perf_counter()
                lines += data.count(b"\n")
                last = time.perf_counter()
        selector.close()
        return first, last, lines

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()


class Publisher:
    """``python _bare.py MODE ...`` as a subprocess; :meth:`wait_ready` once subscribed."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"bare publisher failed to start: {line!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()


# --------------------------------------------------------------------------- the subprocess


def _xpub(endpoint: str) -> zmq.Socket[bytes]:
    """Bind, wait for the first subscription, then say ``ready``."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(endpoint)
    return sock


def _announce_when_subscribed(sock: zmq.Socket[bytes]) -> None:
    sock.recv()  # b"\x01" + topic: a subscriber is live
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def run_zmq(endpoint: str, count: int) -> None:
    """Publish ``count`` chunk messages encoded beforehand, as fast as PUB takes them."""
    sid = str(uuid.uuid4())
    topic = p.chunk_topic(sid)
    text = "x" * 99
    payloads = [p.encode(_chunk(sid, seq, text, time.time())) for seq in range(1, count + 1)]
    sock = _xpub(endpoint)
    _announce_when_subscribed(sock)
    send = sock.send_multipart
    for payload in payloads:
        send((topic, payload))
    sock.close(linger=-1)


def _chunk(sid: str, seq: int, text: str, ts: float) -> p.Chunk:
    return p.Chunk(
        session_id=sid, seq=seq, stream=p.Stream.STDOUT, kind=p.ChunkKind.TEXT, text=text, ts=ts
    )


class _Session:
    """One child of the bare pipeline: its pipe, its file, its seq, its line tail."""

    def __init__(self, argv: list[str], out_dir: Path) -> None:
        self.id = str(uuid.uuid4())
        self.topic = p.chunk_topic(self.id)
        self.child = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.child.stdout is not None
        self.fd = self.child.stdout.fileno()
        self.file = os.open(out_dir / f"{self.id}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.seq = 0
        self.tail = b""

    def lines(self, data: bytes) -> list[bytes]:
        parts = (self.tail + data).split(b"\n")
        self.tail = parts.pop()
        return parts


def run_pipeline(mode: str, endpoint: str, out_dir: Path, argvs: list[list[str]]) -> None:
    """Supervise the children the bare way until every pipe is at EOF."""
    sock = _xpub(endpoint)
    sessions = {s.fd: s for s in (_Session(argv, out_dir) for argv in argvs)}
    selector = selectors.DefaultSelector()
    for fd in sessions:
        selector.register(fd, selectors.EVENT_READ)
    _announce_when_subscribed(sock)
    handle = HANDLERS[mode]
    while sessions:
        for key, _ in selector.select():
            data = os.read(key.fd, READ_SIZE)
            if not data:
                selector.unregister(key.fd)
                sessions.pop(key.fd).child.wait()
                continue
            handle(sessions[key.fd], data, sock)
    sock.close(linger=-1)


_encode = msgspec.json.Encoder().encode
_STDOUT, _TEXT = p.Stream.STDOUT, p.ChunkKind.TEXT
_Chunk = p.Chunk


def _encoded(session: _Session, data: bytes) -> list[bytes]:
    now, sid, seq = time.time(), session.id, session.seq
    out = []
    for raw in session.lines(data):
        seq += 1
        out.append(
            _encode(
                _Chunk(
                    session_id=sid, seq=seq, stream=_STDOUT, kind=_TEXT, text=raw.decode(), ts=now
                )
            )
        )
    session.seq = seq
    return out


def _per_line(session: _Session, data: bytes, sock: zmq.Socket[bytes]) -> None:
    write, send, fd, topic = os.write, sock.send_multipart, session.file, session.topic
    for payload in _encoded(session, data):
        write(fd, payload + b"\n")
        send((topic, payload))


def _batch_message(session: _Session, data: bytes, sock: zmq.Socket[bytes]) -> None:
    texts = [raw.decode() for raw in session.lines(data)]
    if texts:
        first, session.seq = session.seq + 1, session.seq + len(texts)
        batch = p.ChunkBatch(  # only called where the protocol has it
            session_id=session.id,
            first_seq=first,
            last_seq=session.seq,
            stream=_STDOUT,
            kind=_TEXT,
            texts=texts,
            ts=time.time(),
        )
        payload = _encode(batch)
        os.write(session.file, payload + b"\n")
        sock.send_multipart((session.topic, payload))


def _per_read(session: _Session, data: bytes, sock: zmq.Socket[bytes]) -> None:
    payloads = _encoded(session, data)
    if payloads:
        frame = b"\n".join(payloads)
        os.write(session.file, frame + b"\n")
        sock.send_multipart((session.topic, frame))


HANDLERS = {"line": _per_line, "batch": _per_read, "batchmsg": _batch_message}


def _main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "zmq":
        run_zmq(argv[1], int(argv[2]))
    elif mode in HANDLERS:
        run_pipeline(mode, argv[1], Path(argv[2]), json.loads(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
