"""SessionRegistry: live sessions by UUID, and which one is active.

Modelled on BackendRegistry: register, get, iterate. Lookups accept a full id or any
unique prefix, so people can type the first few characters of a UUID.
"""

from __future__ import annotations

from collections.abc import Iterator

from agentplex.protocol import SessionInfo
from agentplex.protocol.errors import AmbiguousSession, NoActiveSession, UnknownSession
from agentplex.supervisor.session import Session


class SessionRegistry:
    """Holds sessions by their UUID and knows the active one."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._active: str | None = None

    def register(self, session: Session) -> None:
        """Add a session; it becomes the active one."""
        self._sessions[session.id] = session
        self._active = session.id

    def get(self, ref: str | None) -> Session:
        """The session ``ref`` names (an id or unique prefix); None means the active one."""
        if ref is None:
            if self._active is None:
                raise NoActiveSession("no session given and no session is active")
            return self._sessions[self._active]
        exact = self._sessions.get(ref)
        if exact is not None:
            return exact
        matches = [sid for sid in self._sessions if sid.startswith(ref)] if ref else []
        if not matches:
            raise UnknownSession(f"no session matches {ref!r}")
        if len(matches) > 1:
            shown = ", ".join(sorted(m[:12] for m in matches)[:5])
            raise AmbiguousSession(f"{ref!r} matches {len(matches)} sessions: {shown}…")
        return self._sessions[matches[0]]

    def switch(self, ref: str) -> Session:
        """Make the session ``ref`` names the active one."""
        session = self.get(ref)
        self._active = session.id
        return session

    def live(self) -> list[Session]:
        """Sessions that have not ended."""
        return [s for s in self._sessions.values() if not s.status.ended]

    def snapshot(self) -> tuple[list[SessionInfo], str | None]:
        """Every session's info, oldest first, and the active id."""
        return [s.info() for s in self._sessions.values()], self._active

    def __iter__(self) -> Iterator[Session]:
        return iter(self._sessions.values())
