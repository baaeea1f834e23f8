"""Control frames: a few MiB go through; a larger request is refused by the client before
it is sent, and one sent anyway gets ``frame_too_large`` addressed to its request id."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest
import zmq
from support import DaemonProcess

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.errors import FrameTooLarge
from agentplex.protocol.paths import RuntimePaths

REPLY_WAIT_MS = 20_000
ONE_KB_ARG = "x" * 1000


@contextmanager
def raw_dealer(daemon: DaemonProcess) -> Iterator[zmq.Socket[bytes]]:
    """A bare DEALER on the daemon's control socket, to send what our client would not."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, REPLY_WAIT_MS)
    dealer.connect(RuntimePaths(daemon.runtime_dir).control_endpoint)
    try:
        yield dealer
    finally:
        dealer.close()
        ctx.term()


def test_control_frames_carry_a_few_mib() -> None:
    assert p.MAX_FRAME_BYTES >= 4 << 20


def test_a_100_mb_start_fails_at_once_with_frame_too_large_naming_both_sizes(
    daemon: DaemonProcess,
) -> None:
    with daemon.client(timeout=10.0) as client:
        began = time.monotonic()
        with pytest.raises(FrameTooLarge) as raised:
            client.start("demo", prompt="x" * 100_000_000)
        assert time.monotonic() - began < 5.0  # not the request timeout: nothing was sent
        sizes = [int(n) for n in re.findall(r"\d+", raised.value.message)]
        assert p.MAX_FRAME_BYTES in sizes  # the limit, and the request's own size
        assert any(n > 100_000_000 for n in sizes)
        assert client.list().sessions == []  # the daemon never saw it, and still answers


def test_a_start_of_1_1_mb_is_taken(client: Client) -> None:
    count = "import sys; print('argv bytes', sum(map(len, sys.argv[1:])))"
    argv = [sys.executable, "-c", count, *[ONE_KB_ARG] * 1100]  # 1.1 MB in one request
    info = client.start("exec", argv=argv)
    texts = [chunk.text for chunk in client.follow(info.id)]
    assert "argv bytes 1100000" in texts


def test_a_frame_just_under_the_limit_is_answered(daemon: DaemonProcess) -> None:
    ping = b'{"type": "ping", "id": 7, "v": 1}'
    padded = ping + b" " * (p.MAX_FRAME_BYTES - len(ping))  # JSON allows the whitespace
    with raw_dealer(daemon) as dealer:
        dealer.send(padded)
        reply = p.reply_decoder.decode(dealer.recv())
    assert isinstance(reply, p.Pong)
    assert reply.id == 7


@pytest.mark.parametrize("id_first", [True, False], ids=["id-first", "id-after-the-prompt"])
def test_an_over_limit_frame_gets_frame_too_large_with_its_request_id(
    daemon: DaemonProcess, id_first: bool
) -> None:
    prompt = "x" * (p.MAX_FRAME_BYTES + 1)
    fields = {"id": 4242, "type": "start", "v": 1, "backend": "demo", "prompt": prompt}
    if not id_first:
        fields = {"type": "start", "v": 1, "prompt": prompt, "id": 4242}
    with raw_dealer(daemon) as dealer:
        dealer.send(msgspec.json.encode(fields))
        reply = p.reply_decoder.decode(dealer.recv())
    assert isinstance(reply, p.Error)
    assert (reply.id, reply.code) == (4242, "frame_too_large")
    assert str(p.MAX_FRAME_BYTES) in reply.message


def test_an_over_limit_frame_without_a_readable_id_is_still_answered(
    daemon: DaemonProcess,
) -> None:
    with raw_dealer(daemon) as dealer:
        dealer.send(b"[" * (p.MAX_FRAME_BYTES + 1))
        reply = p.reply_decoder.decode(dealer.recv())
        assert isinstance(reply, p.Error)
        assert (reply.id, reply.code) == (0, "frame_too_large")
        dealer.send(b'{"type": "ping", "id": 8, "v": 1}')  # and the daemon carries on
        assert p.reply_decoder.decode(dealer.recv()).id == 8
