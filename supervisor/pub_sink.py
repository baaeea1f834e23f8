"""The ZeroMQ PUB socket as a sink of the bus, and the coalesced ``session.list_changed``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import anyio
import zmq

from agentplex.protocol import SessionInfo, SessionListChanged, encode, topic_of
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.events import LIST_CHANGED

Snapshot = Callable[[], tuple[list[SessionInfo], str | None]]
"""Returns every session's info and the active session id."""
LIST_INTERVAL: Final = 0.05
"""Seconds between two ``session.list_changed`` events at most."""


class PubSink:
    """Sends every message of the bus on the PUB socket, and publishes the session list
    when it changed.

    PUB never blocks: a subscriber past its high-water mark loses messages (and refills
    them from the transcript), it never slows the daemon.
    """

    def __init__(
        self, socket: zmq.Socket[bytes], snapshot: Snapshot, interval: float = LIST_INTERVAL
    ) -> None:
        self._socket = socket
        self._snapshot = snapshot
        self._interval = interval
        self._bus: Bus | None = None
        self._list_dirty = anyio.Event()

    def attach(self, bus: Bus) -> None:
        """Become a sink of ``bus`` and watch it for session list changes."""
        bus.attach(self.send)
        bus.on_mark(LIST_CHANGED, self._mark_dirty)
        self._bus = bus

    def send(self, topic: bytes, payloads: Sequence[bytes]) -> None:
        """The sink: each payload as one ``[topic, json]`` message (the hot path's loop)."""
        send = self._socket.send_multipart
        for payload in payloads:
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
