"""The ZeroMQ PUB socket as a sink of the bus, and the coalesced ``session.list_changed``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import anyio
import msgspec
import zmq

from agentplex.protocol import (
    CHUNK_TOPIC,
    Chunk,
    ChunkKind,
    SessionInfo,
    SessionListChanged,
    Stream,
    encode,
    topic_of,
)
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.events import LIST_CHANGED

Snapshot = Callable[[], tuple[list[SessionInfo], str | None]]
"""Returns every session's info and the active session id."""
LIST_INTERVAL: Final = 0.05
"""Seconds between two ``session.list_changed`` events at most."""
MAX_MESSAGE: Final = 128 << 10
"""Default for ``Config.pub_max_message_bytes``: larger chunk messages are elided."""


class _Head(msgspec.Struct):
    """What an elided chunk message's marker keeps of it (the text is skipped unread)."""

    kind: ChunkKind = ChunkKind.RAW
    session_id: str = ""
    seq: int = 0
    first_seq: int = 0
    last_seq: int = 0
    stream: Stream | None = None
    ts: float = 0.0
    turn: int = 0


_decode_head = msgspec.json.Decoder(_Head).decode


def elided(payload: bytes) -> bytes:
    """The marker published instead of a chunk message too large for the events socket:
    a chunk with no text, the message's first seq and how many chunks it held."""
    head = _decode_head(payload)
    first = head.first_seq or head.seq
    count = head.last_seq - first + 1 if head.first_seq else 1
    marker = Chunk(
        head.kind,
        "",
        session_id=head.session_id,
        seq=first,
        stream=head.stream,
        ts=head.ts,
        turn=head.turn,
        elided=count,
    )
    return encode(marker)


class PubSink:
    """Sends every message of the bus on the PUB socket, and publishes the session list
    when it changed.

    PUB never blocks: a subscriber past its high-water mark loses messages (and refills
    them from the transcript), it never slows the daemon. ZeroMQ's mark counts messages,
    so a chunk message over ``max_message`` bytes goes as an ``elided`` marker: what a
    stalled subscriber pins is at most the mark times ``max_message`` (``bounds.py``).
    """

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        snapshot: Snapshot,
        interval: float = LIST_INTERVAL,
        *,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._socket = socket
        self._snapshot = snapshot
        self._interval = interval
        self._max_message = max_message
        self._bus: Bus | None = None
        self._list_dirty = anyio.Event()

    def attach(self, bus: Bus) -> None:
        """Become a sink of ``bus`` and watch it for session list changes."""
        bus.attach(self.send)
        bus.on_mark(LIST_CHANGED, self._mark_dirty)
        self._bus = bus

    def send(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        """The sink: each payload as one ``[topic, json]`` message (the hot path's loop)."""
        send, most = self._socket.send_multipart, self._max_message
        for payload in payloads:
            if len(payload) > most and topic.startswith(CHUNK_TOPIC):
                payload = elided(payload)
            send((topic, payload), flags=zmq.NOBLOCK)

    def _mark_dirty(self) -> None:
        self._list_dirty.set()

    async def run(self) -> None:
        """Publish ``session.list_changed`` on the bus at most every ``interval``, once for a
        burst of changes, until cancelled."""
        assert self._bus is not None, "attach() first"
        while True:
            await self._list_dirty.wait()
            self._list_dirty = anyio.Event()
            sessions, active = self._snapshot()
            event = SessionListChanged(sessions=sessions, active=active)
            self._bus.publish(topic_of(event), encode(event))
            await anyio.sleep(self._interval)
