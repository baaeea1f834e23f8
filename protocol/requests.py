"""Control requests: a client sends one frame, a JSON request carrying ``v`` (the protocol
version) and ``id`` (a request id); the daemon answers with one reply carrying the same ``id``."""

from __future__ import annotations

from typing import Any

import msgspec

from agentplex.protocol.enums import BackendMode, PermissionPolicy
from agentplex.protocol.values import PROTOCOL_VERSION, Tagged


class _Request(Tagged, frozen=True, kw_only=True):
    id: int = 0
    v: int = PROTOCOL_VERSION


class Start(_Request, frozen=True, tag="start"):
    """Start a session. ``argv`` is the command for the ``exec`` backend.

    With no ``backend`` the persona's default backend is used, else ``demo``; ``mode``,
    ``model`` and ``permission_policy`` override the backend's and persona's defaults.
    """

    backend: str | None = None
    prompt: str | None = None
    persona: str | None = None
    mode: BackendMode | None = None
    model: str | None = None
    permission_policy: PermissionPolicy | None = None
    tag: str | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    argv: list[str] = []
    keep_children: bool = False
    """Let what the agent leaves running when its process exits run on (a terminate and
    the daemon's shutdown still end it)."""


class Send(_Request, frozen=True, tag="send"):
    """Send a message to a session (a full id or unique prefix; None: the active one)."""

    message: str
    session: str | None = None


class Interrupt(_Request, frozen=True, tag="interrupt"):
    """Interrupt the running turn: SIGINT to the session's process group."""

    session: str | None = None


class Terminate(_Request, frozen=True, tag="terminate"):
    """End a session: SIGTERM to its whole tree, SIGKILL after ``grace`` seconds."""

    session: str | None = None
    grace: float | None = None


class ListSessions(_Request, frozen=True, tag="list"):
    """List the sessions the daemon holds: live ones and those ended less than
    ``keep_ended`` ago; with ``all``, also every older one its session table records."""

    all: bool = False


class Switch(_Request, frozen=True, tag="switch"):
    """Make a session the active one."""

    session: str


class Inspect(_Request, frozen=True, tag="inspect"):
    """Describe one session (a full id or unique prefix; None: the active one)."""

    session: str | None = None


class Permit(_Request, frozen=True, tag="permit"):
    """Answer the agent's pending permission request (a session in ``waiting_input``)."""

    allow: bool
    session: str | None = None
    request_id: str | None = None


class Replay(_Request, frozen=True, tag="replay"):
    """Every chunk of a session from ``from_seq`` on, at most ``limit`` per page."""

    session: str
    from_seq: int = 1
    limit: int = 10_000


class ListPersonas(_Request, frozen=True, tag="personas"):
    """List every persona template, and the template files that could not be read."""


class ReloadPersonas(_Request, frozen=True, tag="reload_personas"):
    """Read the persona templates again (as SIGHUP does); the reply says what changed.

    Sessions already started keep the persona they started with."""


class ListBackends(_Request, frozen=True, tag="backends"):
    """List every backend plugin and whether its CLI is available."""


class Sync(_Request, frozen=True, tag="sync"):
    """Ask the daemon to publish a ``daemon.sync`` event carrying ``token``.

    A subscriber uses it to learn that its subscription is live (ZeroMQ's slow joiner).
    """

    token: str


class Ping(_Request, frozen=True, tag="ping"):
    """Ask who the daemon is."""


Request = (
    Start
    | Send
    | Interrupt
    | Terminate
    | ListSessions
    | Inspect
    | Switch
    | Permit
    | Replay
    | ListBackends
    | ListPersonas
    | ReloadPersonas
    | Sync
    | Ping
)


class Envelope(msgspec.Struct, frozen=True):
    """What can still be read of a message that does not decode (a request the daemon
    cannot take, a reply the client cannot), to address the error to its sender."""

    id: Any = None
    v: Any = None
    type: Any = None

    @property
    def request_id(self) -> int | None:
        """The id, if it is one: an int (and not a bool, which is an int too)."""
        return self.id if type(self.id) is int else None
