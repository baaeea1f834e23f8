"""SessionRegistry: the sessions the daemon holds by UUID, and which one is active.

Modelled on BackendRegistry: register, get, iterate. Lookups accept a full id or any
unique prefix, so people can type the first few characters of a UUID.

It holds every session that has not ended, and an ended one until it is evicted
(``keep_ended`` after its end, see eviction.py). An evicted session is still found, by id
or prefix, through the registry's :class:`Archive`: rebuilt on demand from its record in
the session table, it answers ``inspect`` and ``replay`` (from its transcript) as before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Protocol

from agentplex.protocol import SessionInfo, SessionStatus
from agentplex.protocol.errors import AmbiguousSession, NoActiveSession, UnknownSession
from agentplex.supervisor.session import Session
from agentplex.supervisor.session_state import SessionState


class Archive(Protocol):
    """The sessions the daemon recorded, held in memory or not (the session table)."""

    def ids(self) -> Collection[str]:
        """Every recorded session id (held ones may be among them)."""
        ...

    def info(self, session_id: str) -> SessionInfo | None:
        """A recorded session's last known info, if it is recorded."""
        ...

    def revive(self, session_id: str) -> Session:
        """The recorded session, rebuilt (not registered); UnknownSession if there is none."""
        ...


class _NoArchive:
    """Nothing recorded: a registry on its own finds only what it holds."""

    def ids(self) -> Collection[str]:
        return ()

    def info(self, session_id: str) -> SessionInfo | None:
        return None

    def revive(self, session_id: str) -> Session:
        raise UnknownSession(f"no session matches {session_id!r}")


class SessionRegistry:
    """Holds sessions by their UUID and knows the active one."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._active: str | None = None
        self.archive: Archive = _NoArchive()
        """Where sessions no longer held are found again (the manager sets the table's)."""
        self.on_active_changed: Callable[[str | None], object] = lambda session_id: None
        """Told when the active session moves on by itself (the manager publishes it)."""

    def register(self, session: Session) -> None:
        """Add a session; it becomes the active one."""
        self._sessions[session.id] = session
        self._active = session.id
        session.on_end = self._session_ended

    def _session_ended(self, session: SessionState) -> None:
        """An ended session stays active no longer: the newest live one is, or none."""
        if session.id != self._active:
            return
        live = self.live()
        self._active = max(live, key=lambda s: s.created_at).id if live else None
        self.on_active_changed(self._active)

    def get(self, ref: str | None) -> Session:
        """The session ``ref`` names (an id or unique prefix); None means the active one.

        An evicted session is rebuilt from the archive: it has ended, so what it can do
        (describe itself, replay its transcript, refuse messages) needs nothing else.
        """
        session_id = self._resolve(ref)
        held = self._sessions.get(session_id)
        return held if held is not None else self.archive.revive(session_id)

    def _resolve(self, ref: str | None) -> str:
        if ref is None:
            if self._active is None:
                raise NoActiveSession("no session given and no session is active")
            return self._active
        if ref in self._sessions:
            return ref
        recorded = self.archive.ids()
        if ref in recorded:
            return ref
        matches = {sid for sid in self._sessions if sid.startswith(ref)} if ref else set()
        if ref:
            matches.update(sid for sid in recorded if sid.startswith(ref))
        if not matches:
            raise UnknownSession(f"no session matches {ref!r}")
        if len(matches) > 1:
            shown = ", ".join(sorted(m[:12] for m in matches)[:5])
            raise AmbiguousSession(f"{ref!r} matches {len(matches)} sessions: {shown}…")
        return matches.pop()

    def switch(self, ref: str) -> Session:
        """Make the session ``ref`` names the active one."""
        session = self.get(ref)
        self._active = session.id
        return session

    def evict(self, session_id: str) -> bool:
        """Stop holding an ended session (the archive still finds it); False if it is not
        held or has not ended."""
        session = self._sessions.get(session_id)
        if session is None or not session.status.ended:
            return False
        del self._sessions[session_id]
        return True

    def live(self) -> list[Session]:
        """Sessions that run, or may run, an agent process in this daemon: neither ended nor
        interrupted (what ``max_sessions`` counts). An interrupted session lost its process
        to a daemon crash; it counts again once a message starts a turn."""
        return [s for s in self._sessions.values() if _live(s.status)]

    def unfinished(self) -> list[Session]:
        """Sessions that have not ended, interrupted ones included: a shutdown ends them,
        and their transcripts may still grow (retention leaves them alone)."""
        return [s for s in self._sessions.values() if not s.status.ended]

    def ended(self) -> list[Session]:
        """Ended sessions still held (not evicted yet)."""
        return [s for s in self._sessions.values() if s.status.ended]

    def snapshot(self, *, evicted: bool = False) -> tuple[list[SessionInfo], str | None]:
        """Every held session's info, oldest first, and the active id; with ``evicted``,
        also every recorded session no longer held (sorted by creation time)."""
        infos = [s.info() for s in self._sessions.values()]
        if evicted:
            for session_id in self.archive.ids():
                if session_id not in self._sessions:
                    info = self.archive.info(session_id)
                    if info is not None:
                        infos.append(info)
            infos.sort(key=lambda info: info.created_at)
        return infos, self._active

    def __iter__(self) -> Iterator[Session]:
        return iter(self._sessions.values())


def _live(status: SessionStatus) -> bool:
    return not status.ended and status is not SessionStatus.INTERRUPTED
