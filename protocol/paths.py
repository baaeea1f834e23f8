"""Where a daemon keeps its sockets, lock, state and transcripts.

Daemon and clients resolve the same places from the same variables, so every CLI
command finds the daemon that ``agentplex daemon`` started with the same environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentplex.protocol.errors import RuntimeDirTooLong

CONTROL_SOCKET = "control.sock"
EVENTS_SOCKET = "events.sock"
LOCK_FILE = "daemon.lock"
"""In the runtime dir and in the state dir: ``flock``-ed by the daemon for its life."""
_MAX_IPC_PATH = 107


def default_runtime_dir() -> Path:
    """``$AGENTPLEX_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/agentplex``, else a per-user /tmp dir.

    The /tmp fallback is a guessable name in a shared directory: the daemon creates it 0700
    and refuses it if it was there before with another owner or mode, and a client sends
    nothing to it unless it and its sockets belong to the client's user alone (see
    ``supervisor/dirs.py`` and ``client/runtime_dir.py``). Someone else can then at worst
    keep the daemon from starting there, never listen in its place.
    """
    explicit = os.environ.get("AGENTPLEX_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "agentplex"
    return Path(f"/tmp/agentplex-{os.getuid()}")


def default_state_dir() -> Path:
    """``$AGENTPLEX_STATE_DIR``, else ``$XDG_STATE_HOME/agentplex``, else ~/.local/state/..."""
    explicit = os.environ.get("AGENTPLEX_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "agentplex"


@dataclass(frozen=True)
class RuntimePaths:
    """The files of one daemon's runtime directory."""

    runtime_dir: Path

    @property
    def control(self) -> Path:
        return self.runtime_dir / CONTROL_SOCKET

    @property
    def events(self) -> Path:
        return self.runtime_dir / EVENTS_SOCKET

    @property
    def lock(self) -> Path:
        return self.runtime_dir / LOCK_FILE

    @property
    def control_endpoint(self) -> str:
        return ipc_endpoint(self.control)

    @property
    def events_endpoint(self) -> str:
        return ipc_endpoint(self.events)


def ipc_endpoint(path: Path) -> str:
    """The ``ipc://`` endpoint for a socket path, refusing paths the kernel cannot bind."""
    text = str(path.absolute())
    if len(text.encode()) > _MAX_IPC_PATH:
        raise RuntimeDirTooLong(
            f"socket path {text!r} is longer than {_MAX_IPC_PATH} bytes; "
            "choose a shorter runtime dir (AGENTPLEX_RUNTIME_DIR)"
        )
    return f"ipc://{text}"
