"""Forgetting ended sessions: what the daemon holds stays bounded by the live and the recent.

An ended session stays in memory (its replay ring, its info) and in ``list`` for
``keep_ended`` seconds, then the :class:`Evictor` drops it from the registry. What remains
of it is its transcript on disk and its line in the session table, which the
:class:`TableArchive` reads back on demand: ``list --all`` shows it, and ``inspect``,
``replay`` (so ``attach`` and ``follow``) and ``logs`` find it by id or prefix, through a
rebuilt Session that is not registered again. A restarted daemon takes back only the
sessions that are live or ended recently (:func:`held_after_restart`).
"""

from __future__ import annotations

import collections
import heapq
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from typing import Final

import anyio
import structlog
from anyio.abc import TaskStatus

from agentplex.protocol import SessionInfo, SessionStatus
from agentplex.protocol.errors import UnknownSession
from agentplex.protocol.transcript_io import locate
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.bus import Bus, Gap, Message
from agentplex.supervisor.factory import SessionFactory
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.session import Session
from agentplex.supervisor.table import SessionRecord, SessionTable

log = structlog.get_logger(__name__)

ENDED_TOPIC: Final = b"session.terminated."
"""Every session's end is published under this prefix (``_finish``: once per session)."""
REVIVED_KEPT: Final = 8
"""Evicted sessions kept rebuilt at once: a ``follow`` paging through one reuses its
transcript's seq index instead of rescanning the file for every page."""


class TableArchive:
    """The registry's :class:`~agentplex.supervisor.registry.Archive`: sessions as the
    durable table records them, rebuilt on demand by ``revive``."""

    def __init__(self, table: SessionTable, factory: SessionFactory, backends: BackendRegistry):
        self._table = table
        self._factory = factory
        self._backends = backends
        self._revived: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def ids(self) -> Collection[str]:
        return self._table.saved_ids()

    def info(self, session_id: str) -> SessionInfo | None:
        record = self._table.saved(session_id)
        return record.info if record is not None else None

    def revive(self, session_id: str) -> Session:
        """The session rebuilt from its record (its chunks are read from its transcript);
        the few most recently asked for are kept rebuilt."""
        session = self._revived.pop(session_id, None)
        if session is None:
            record = self._table.saved(session_id)
            if record is None:
                raise UnknownSession(f"no session matches {session_id!r}")
            session = self._rebuild(record)
        self._revived[session_id] = session
        while len(self._revived) > REVIVED_KEPT:
            self._revived.popitem(last=False)
        return session

    def _rebuild(self, record: SessionRecord) -> Session:
        session = self._factory.rebuild(record, self._backends.get(record.info.backend))
        status = record.info.status
        # Only ended sessions are evicted; anything else found here lost its process with
        # an earlier daemon, and must never be taken for one that still runs.
        session.restore(record, status if status.ended else SessionStatus.INTERRUPTED)
        return session


class Evictor:
    """Drops each ended session from the registry ``keep_ended`` seconds after its end.

    Ends are learnt from the bus (``session.terminated``); sessions that were already
    ended when it started (a restart) are aged by their transcript's last write, the
    footer. ``on_evicted`` is called after each batch (the session list changed).
    """

    def __init__(
        self,
        registry: SessionRegistry,
        bus: Bus,
        keep_ended: float,
        on_evicted: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._bus = bus
        self._keep = keep_ended
        self._on_evicted = on_evicted
        self._due: list[tuple[float, str]] = []
        """A heap of (monotonic time it is due, session id)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Evict as sessions come due, until cancelled. Ready once the sessions that were
        already over their time are gone (before a restarted daemon serves a ``list``)."""
        with self._bus.subscribe(ENDED_TOPIC) as ends:
            self._schedule_held()
            self._evict_due()
            task_status.started()
            while True:
                with anyio.move_on_after(self._until_due()):
                    try:
                        item = await ends.receive()
                    except anyio.EndOfStream:  # the bus closed: the daemon is stopping
                        return
                    self._note(item)
                self._evict_due()

    def _note(self, item: Message | Gap) -> None:
        if isinstance(item, Gap):  # ends were lost (a burst): look at every held session
            self._schedule_held()
            return
        session_id = item.topic[len(ENDED_TOPIC) :].decode()
        self._schedule(session_id, time.monotonic() + self._keep)

    def _schedule_held(self) -> None:
        """Schedule every held ended session by its transcript's age."""
        now, clock = time.time(), time.monotonic()
        for session in self._registry.ended():
            ended_at = ended_time(session.transcript.path)
            self._schedule(session.id, clock + max(0.0, ended_at + self._keep - now))

    def _schedule(self, session_id: str, due: float) -> None:
        if not math.isinf(self._keep):  # keep_ended = inf: never evict
            heapq.heappush(self._due, (due, session_id))

    def _until_due(self) -> float:
        return max(0.0, self._due[0][0] - time.monotonic()) if self._due else math.inf

    def _evict_due(self) -> None:
        now, evicted = time.monotonic(), 0
        while self._due and self._due[0][0] <= now:
            _, session_id = heapq.heappop(self._due)
            evicted += self._registry.evict(session_id)
        if evicted:
            log.debug("sessions_evicted", count=evicted)
            self._on_evicted()


def ended_time(transcript: os.PathLike[str] | str) -> float:
    """When a session ended, as its transcript says: the time of its last write (the
    footer), compressed by retention or not (its copy keeps the time). One that is gone
    (purged) ended long ago: 0."""
    try:
        return os.stat(locate(transcript) or transcript).st_mtime
    except OSError:
        return 0.0


def held_after_restart(
    records: Iterable[SessionRecord], keep_ended: float, now: float
) -> list[SessionRecord]:
    """The records a restarted daemon takes back into memory: every session that had not
    ended, and those that ended less than ``keep_ended`` ago. The others stay in the table
    (``list --all``) without costing memory or start-up time."""
    return [
        record
        for record in records
        if not record.info.status.ended
        or ended_time(record.info.transcript) + keep_ended > now
    ]
