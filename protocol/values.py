"""The values messages carry: versions, limits, usage and the info snapshots."""

from __future__ import annotations

from typing import Final

import msgspec

from agentplex.protocol.enums import BackendMode, PermissionPolicy, SessionStatus, UsageScope

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 8 << 20
"""Largest control frame the daemon accepts; larger ones get a ``frame_too_large`` error
(and the client refuses to send them). Room for a prompt of a few MiB: people paste logs and
whole files into prompts."""


class Tagged(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every tagged message."""


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Token and cost figures a CLI reports for a turn (or totals for a session).

    Every ``Usage`` the daemon writes or publishes is a turn's own figures (a result
    chunk's) or a session's totals (their sum); ``scope`` is ``turn`` in both. Only a
    driver says otherwise, for figures its CLI reports as running totals."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int | None = None
    scope: UsageScope = UsageScope.TURN


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one session, as ``list`` and events report it."""

    id: str
    backend: str
    persona: str | None
    tag: str | None
    cwd: str
    status: SessionStatus
    created_at: float
    persona_icon: str | None = None
    mode: BackendMode = BackendMode.TURN
    model: str | None = None
    rss_bytes: int | None = None
    """Resident memory of all its processes, sampled every ``limit_interval``."""
    cpu_percent: float | None = None
    """CPU of all its processes since the previous sample (100 = one core)."""
    pid: int | None
    cli_session_id: str | None
    turns: int
    chunks: int
    transcript: str
    queued: int = 0
    exit_code: int | None = None
    ended_reason: str | None = None
    usage: Usage = Usage()
    keep_children: bool = False
    """What the agent leaves running outlives its process (see ``Start.keep_children``)."""


class BackendInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One registered backend plugin and what it can do."""

    id: str
    modes: list[str]
    description: str
    available: bool
    capabilities: list[str] = []
    executable: str | None = None
    version: str | None = None
    problem: str | None = None
    credentials: list[str] = []
    """The variables its CLI authenticates with (names only), as the backend declares them."""
    credentials_found: list[str] = []
    """Those the daemon has for its sessions (its environment, env file, systemd
    credentials, ``[backends.<id>] env``), and login files that exist: names, never values."""
    policies: dict[str, str] = {}
    """What each permission policy (``ask``, ``allow``, ``deny``) does with this backend."""


class PersonaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One persona template."""

    name: str
    icon: str
    description: str
    backend: str | None
    model: str | None
    allowed_tools: list[str]
    permission_policy: PermissionPolicy
    source: str
    problem: str | None = None
    """Why a ``start`` with this persona would fail (e.g. its backend is not registered)."""


class DaemonInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who answered: the daemon's identity and where it keeps things."""

    pid: int
    version: str
    protocol: int
    runtime_dir: str
    state_dir: str
    started_at: float
    sessions: int
    fd_limit: int = 0
    """The daemon's file descriptor limit (its soft RLIMIT_NOFILE; 0: an older daemon)."""
    fds_open: int = 0
    """Descriptors the daemon has open now."""
    fd_reserve: int = 0
    """Descriptors kept free for connections, replays and stopping processes: a start that
    could eat into them is refused with ``too_many_open_files``."""
