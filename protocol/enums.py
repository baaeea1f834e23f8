"""The enums of the wire: every one is validated by msgspec wherever it travels."""

from __future__ import annotations

import enum
from typing import Final


class SessionStatus(enum.StrEnum):
    """Where a session is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    WAITING_INPUT = "waiting_input"
    EXITED = "exited"
    TERMINATED = "terminated"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def ended(self) -> bool:
        """True once the session can take no more messages."""
        return self in _ENDED


_ENDED: Final = frozenset({SessionStatus.EXITED, SessionStatus.TERMINATED, SessionStatus.FAILED})


class ChunkKind(enum.StrEnum):
    """What a chunk of agent output is, whichever vendor's CLI produced it."""

    TEXT = "text"
    THINKING = "thinking"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    RESULT = "result"
    ERROR = "error"
    SYSTEM = "system"
    PERMISSION_REQUEST = "permission_request"
    RAW = "raw"


class Stream(enum.StrEnum):
    """Where a chunk came from: the child's stdout or stderr, or the daemon itself."""

    STDOUT = "stdout"
    STDERR = "stderr"
    DAEMON = "daemon"


class BackendMode(enum.StrEnum):
    """How a backend carries a conversation across messages."""

    TURN = "turn"
    """One process per turn, continued through the agent's own resume id."""
    LONG_LIVED = "long_lived"
    """One process for the whole session, each message written to its stdin."""


class UsageScope(enum.StrEnum):
    """What a usage figure a CLI reports counts (drivers tag it; the daemon turns every
    figure into the turn's own before it totals, logs or publishes it)."""

    TURN = "turn"
    """This turn's alone."""
    PROCESS = "process"
    """Everything the agent process used so far (a long-lived process's running total)."""
    THREAD = "thread"
    """Everything the CLI's conversation used so far, across the processes that resumed it."""


class PermissionPolicy(enum.StrEnum):
    """What the daemon answers when an agent asks permission to use a tool."""

    ASK = "ask"
    """A person decides: the session waits in ``waiting_input`` for ``permit``."""
    ALLOW = "allow"
    DENY = "deny"


class Role(enum.StrEnum):
    """What a caller of the control API may do; each role may do all a lower one may.

    Compare roles with :meth:`allows` (or :attr:`rank`), never with ``<``: as strings
    "admin" sorts before "observer".
    """

    OBSERVER = "observer"
    """Looks: lists, inspects, replays, pings."""
    OPERATOR = "operator"
    """Drives sessions: starts, sends, interrupts, terminates, answers permissions."""
    ADMIN = "admin"
    """Everything; the daemon's owner (a local ipc caller)."""

    @property
    def rank(self) -> int:
        """The role's place in the order, observer lowest."""
        return _ROLE_RANK[self]

    def allows(self, needed: Role) -> bool:
        """True if this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_ROLE_RANK: Final = {role: rank for rank, role in enumerate(Role)}
