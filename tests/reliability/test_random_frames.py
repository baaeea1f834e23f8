"""10,000 random frames on the control socket: every one answered, the daemon unharmed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import DaemonProcess

from agentplex import protocol as p
from agentplex.client import Client

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
HARMLESS_TYPES = st.sampled_from(["list", "ping", "inspect", "replay", "switch", "sync", "permit"])
REQUEST_SHAPED = st.fixed_dictionaries(
    {"type": HARMLESS_TYPES | st.text(max_size=12)},
    optional={
        "id": JSON,
        "v": JSON,
        "session": JSON,
        "from_seq": JSON,
        "limit": JSON,
        "token": JSON,
        "allow": JSON,
    },
).map(lambda d: json.dumps(d).encode())
FRAME = st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()) | REQUEST_SHAPED
MESSAGE = st.lists(FRAME, min_size=1, max_size=3)


@pytest.fixture
def dealer(daemon: DaemonProcess) -> Iterator[zmq.Socket[bytes]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(f"ipc://{daemon.runtime_dir}/control.sock")
    yield sock
    sock.close()
    ctx.term()


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(frames=MESSAGE)
def test_every_random_frame_gets_a_reply_and_the_daemon_stays_up(
    dealer: zmq.Socket[bytes], frames: list[bytes]
) -> None:
    dealer.send_multipart(frames)
    reply = p.reply_decoder.decode(dealer.recv())
    assert reply.id is not None


def test_after_the_storm_a_normal_request_is_answered(
    dealer: zmq.Socket[bytes], daemon: DaemonProcess, client: Client
) -> None:
    dealer.send_multipart([b"\x00" * 64, b"{}"])
    assert isinstance(p.reply_decoder.decode(dealer.recv()), p.Error)
    assert client.ping().pid == daemon.process.pid
