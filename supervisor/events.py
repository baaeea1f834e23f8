"""The PUB side: every event goes out as ``[topic, json]`` on the events socket."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
import zmq

from agentplex.protocol import (
    ActiveChanged,
    Event,
    Heartbeat,
    SessionCreated,
    SessionInfo,
    SessionListChanged,
    SessionStatus,
    SessionTerminated,
    StatusChanged,
    SyncMark,
    chunk_topic,
    encode,
    topic_of,
)

Snapshot = Callable[[], tuple[list[SessionInfo], str | None]]
LIST_INTERVAL = 0.05
"""Seconds between two ``session.list_changed`` events at most."""
"""Returns every session's info and the active session id."""


class EventPublisher:
    """Publishes events. PUB never blocks: a subscriber past its high-water mark loses
    messages (and refills them from the transcript), it never slows the daemon."""

    def __init__(self, socket: zmq.Socket[bytes], snapshot: Snapshot) -> None:
        self._socket = socket
        self._snapshot = snapshot
        self._list_dirty = anyio.Event()

    def publish(self, event: Event) -> None:
        """Send one event under its topic."""
        self._socket.send_multipart((topic_of(event), encode(event)), flags=zmq.NOBLOCK)

    def publish_chunks(self, session_id: str, payloads: Sequence[bytes]) -> None:
        """Send already-encoded chunks of one session (encoded once, also logged as is)."""
        topic = chunk_topic(session_id)
        send = self._socket.send_multipart
        for payload in payloads:
            send((topic, payload), flags=zmq.NOBLOCK)

    def created(self, info: SessionInfo) -> None:
        self.publish(SessionCreated(session=info))
        self.list_changed()

    def terminated(self, info: SessionInfo, reason: str) -> None:
        self.publish(SessionTerminated(session=info, reason=reason))
        self.list_changed()

    def status_changed(self, info: SessionInfo, previous: SessionStatus) -> None:
        self.publish(
            StatusChanged(session_id=info.id, status=info.status, previous=previous, ts=time.time())
        )
        self.list_changed()

    def active_changed(self, session_id: str | None) -> None:
        self.publish(ActiveChanged(session_id=session_id))

    def list_changed(self) -> None:
        """Note that the session list changed; :meth:`run` publishes it soon, once for a
        burst of changes (every event of a burst would otherwise carry every session)."""
        self._list_dirty.set()

    async def run(self) -> None:
        """Publish ``session.list_changed`` at most every LIST_INTERVAL, until cancelled."""
        while True:
            await self._list_dirty.wait()
            self._list_dirty = anyio.Event()
            sessions, active = self._snapshot()
            self.publish(SessionListChanged(sessions=sessions, active=active))
            await anyio.sleep(LIST_INTERVAL)

    def heartbeat(self, pid: int, sessions: int) -> None:
        self.publish(Heartbeat(pid=pid, ts=time.time(), sessions=sessions))

    def sync(self, token: str) -> None:
        self.publish(SyncMark(token=token))
