"""Control requests: a client sends one frame, a JSON request carrying ``v`` (the protocol
version) and ``id`` (a request id); the daemon answers with one reply carrying the same ``id``."""

from __future__ import annotations

from typing import Any

import msgspec

from agentplex.protocol.enums import BackendMode, PermissionPolicy
from agentplex.protocol.panels import PanelAction, PanelConfig
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


# ---------------------------------------------------------------------- panels
# A panel is named by its id or any unique prefix of it (as sessions are).


class PanelRequest(_Request, frozen=True, kw_only=True):
    """Base of every panel request (the daemon hands them all to its panel service)."""


class PanelCreate(PanelRequest, frozen=True, tag="panel_create"):
    """Start a panel: its members' sessions start and the orchestrator gives the first turn.

    Checked whole before anything is written or started (unknown persona or backend, too
    few or too many members, a moderator who is not a member, a malformed ``until``)."""

    config: PanelConfig


class PanelList(PanelRequest, frozen=True, tag="panel_list"):
    """Every panel the daemon knows, newest first (archived ones only with ``all``)."""

    all: bool = False


class PanelShow(PanelRequest, frozen=True, tag="panel_show"):
    """A panel, and a page of its messages from index ``start`` (0: the first) on."""

    panel: str
    start: int = 0
    limit: int = 1_000


class PanelSay(PanelRequest, frozen=True, tag="panel_say"):
    """A human posts to a panel (optionally replying to a message); not an agent's turn."""

    panel: str
    text: str
    participant: str = "human"
    reply_to: str | None = None


class PanelReact(PanelRequest, frozen=True, tag="panel_react"):
    """React to a message with an emoji; reactions never count as turns."""

    panel: str
    message: str
    emoji: str
    participant: str = "human"


class PanelDecide(PanelRequest, frozen=True, tag="panel_decide"):
    """Put a proposal to the voting members (a position round), then record the decision.

    The round waits for the turn in flight, asks every voting agent member at once and
    waits up to ``human_wait_s`` for each voting human member to post a ``POSITION:`` line
    (``panel_say``); a member with no position abstains. ``veto`` offers a veto."""

    panel: str
    proposal: str
    veto: bool = False
    human_wait_s: float = 120.0


class PanelControl(PanelRequest, frozen=True, tag="panel_control"):
    """Pause, resume, end or archive a panel."""

    panel: str
    action: PanelAction


class PanelNext(PanelRequest, frozen=True, tag="panel_next"):
    """Pick the next speaker of a sequential panel under the manual speaker policy (which
    gives no turn until a pick); the pick holds for one turn."""

    panel: str
    participant: str


class PanelReport(PanelRequest, frozen=True, tag="panel_report"):
    """A panel's analytics and its readable Markdown report."""

    panel: str


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
    | PanelCreate
    | PanelList
    | PanelShow
    | PanelSay
    | PanelReact
    | PanelDecide
    | PanelControl
    | PanelReport
    | PanelNext
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
