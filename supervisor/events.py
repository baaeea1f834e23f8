"""The publishing side of the daemon: every event goes onto the in-process bus as
``(topic, json)``, encoded once; the bus hands it to the ZeroMQ PUB sink and to every
in-process subscriber (see :mod:`agentplex.supervisor.bus`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from agentplex.protocol import (
    ActiveChanged,
    Event,
    Heartbeat,
    SessionCreated,
    SessionInfo,
    SessionStatus,
    SessionTerminated,
    StatusChanged,
    SyncMark,
    chunk_topic,
    encode,
    topic_of,
)
from agentplex.supervisor.bus import Bus

LIST_CHANGED: Final = "session.list_changed"
"""The bus marker for "the session list changed": whoever publishes ``session.list_changed``
(the PUB sink) watches it and coalesces a burst of changes into one event."""


class EventPublisher:
    """Publishes events on the bus. Nothing here waits: a consumer that falls behind loses
    messages (and refills them from the transcript), it never slows the daemon."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def publish(self, event: Event) -> None:
        """Publish one event under its topic."""
        self._bus.publish(topic_of(event), encode(event))

    def publish_chunks(self, session_id: str, payloads: Sequence[bytes]) -> None:
        """Publish already-encoded chunks of one session (encoded once, also logged as is)."""
        self._bus.publish_many(chunk_topic(session_id), payloads)

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
        """Note that the session list changed; ``session.list_changed`` follows soon, once for
        a burst of changes (every event of a burst would otherwise carry every session)."""
        self._bus.mark(LIST_CHANGED)

    def heartbeat(self, pid: int, sessions: int) -> None:
        self.publish(Heartbeat(pid=pid, ts=time.time(), sessions=sessions))

    def sync(self, token: str) -> None:
        self.publish(SyncMark(token=token))
