"""Control replies: one frame per request, carrying the request's ``id``."""

from __future__ import annotations

import msgspec

from agentplex.protocol.panels import Decision, PanelInfo, PanelMessage
from agentplex.protocol.values import (
    BackendInfo,
    DaemonInfo,
    PersonaInfo,
    SessionInfo,
    Tagged,
)


class _Reply(Tagged, frozen=True, kw_only=True, omit_defaults=False):
    # Every field always written: a reply to request id 0 still carries ``"id": 0``, and
    # a client reads ``queued``, ``escalated``... without knowing the defaults.
    id: int = 0


class Started(_Reply, frozen=True, tag="started"):
    session: SessionInfo


class Sent(_Reply, frozen=True, tag="sent"):
    session_id: str
    queued: int = 0


class Interrupted(_Reply, frozen=True, tag="interrupted"):
    session_id: str


class Terminated(_Reply, frozen=True, tag="terminated"):
    session: SessionInfo
    escalated: bool = False


class Sessions(_Reply, frozen=True, tag="sessions"):
    sessions: list[SessionInfo]
    active: str | None = None


class Described(_Reply, frozen=True, tag="described"):
    session: SessionInfo


class Switched(_Reply, frozen=True, tag="switched"):
    session_id: str


class Backends(_Reply, frozen=True, tag="backends"):
    backends: list[BackendInfo]


class Permitted(_Reply, frozen=True, tag="permitted"):
    session_id: str
    request_id: str


class Replayed(_Reply, frozen=True, tag="replayed"):
    """One page of chunks (``agent.chunk`` or ``agent.chunks`` objects, in seq order; the
    first may begin before ``from_seq``) and where the session stands.

    ``last_seq`` is the session's newest seq; more pages follow while the last chunk's
    seq is below it. ``ended`` says no chunk will ever follow ``last_seq``.
    """

    session_id: str
    chunks: list[msgspec.Raw]
    last_seq: int
    ended: bool


class Personas(_Reply, frozen=True, tag="personas"):
    """Every persona, and each problem of the template files (``path: problem``): a file
    that could not be read, two files naming one persona, a persona's unknown backend."""

    personas: list[PersonaInfo]
    problems: list[str] = []
    changes: list[str] = []
    """For ``reload_personas``: what the reload changed (``added NAME (path)``,
    ``changed NAME (path)``, ``removed NAME``); empty for ``personas``."""


class Synced(_Reply, frozen=True, tag="synced"):
    token: str


class Pong(_Reply, frozen=True, tag="pong"):
    daemon: DaemonInfo


class Error(_Reply, frozen=True, tag="error"):
    """A request failed; ``code`` is stable and names the condition."""

    code: str
    message: str


# ---------------------------------------------------------------------- panels


class PanelCreated(_Reply, frozen=True, tag="panel_created"):
    panel: PanelInfo


class Panels(_Reply, frozen=True, tag="panels"):
    panels: list[PanelInfo]


class PanelShown(_Reply, frozen=True, tag="panel_shown"):
    """A panel and a page of its messages (reactions merged in); ``total`` messages in all."""

    panel: PanelInfo
    messages: list[PanelMessage]
    start: int
    total: int


class PanelPosted(_Reply, frozen=True, tag="panel_posted"):
    """The message a ``panel_say`` posted, or the one a ``panel_react`` reacted to."""

    message: PanelMessage


class PanelChanged(_Reply, frozen=True, tag="panel_changed"):
    """The panel after a ``panel_control``."""

    panel: PanelInfo


class PanelDecided(_Reply, frozen=True, tag="panel_decided"):
    decision: Decision


class PanelReported(_Reply, frozen=True, tag="panel_reported"):
    """``markdown`` is the readable report; ``analytics`` the figures as JSON."""

    panel: PanelInfo
    markdown: str
    analytics: msgspec.Raw


Reply = (
    Started
    | Sent
    | Interrupted
    | Terminated
    | Sessions
    | Described
    | Switched
    | Permitted
    | Replayed
    | Backends
    | Personas
    | Synced
    | Pong
    | PanelCreated
    | Panels
    | PanelShown
    | PanelPosted
    | PanelChanged
    | PanelDecided
    | PanelReported
    | Error
)
