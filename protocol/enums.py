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


class PermissionPolicy(enum.StrEnum):
    """What the daemon answers when an agent asks permission to use a tool."""

    ASK = "ask"
    """A person decides: the session waits in ``waiting_input`` for ``permit``."""
    ALLOW = "allow"
    DENY = "deny"
