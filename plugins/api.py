"""What a backend plugin is: how to start an agent, continue it, and talk to its process.

A backend is registered in the daemon's ``BackendRegistry`` by its id: the built-in ones
plus any object exposed through the ``agentplex.backends`` entry-point group (the entry
point names a zero-argument callable, usually the class, that returns a ``Backend``).

A backend makes one :class:`Driver` per process. The driver turns the process's output
lines into chunks and says what to write to its stdin: an opening handshake, each
message, answers to the agent's own requests, an in-band interrupt.

A turn's prompt travels in its command line (:meth:`Backend.argv`) while that holds it;
Linux takes at most 128 KiB in one argument. A backend whose CLI can read the prompt from
standard input also offers :meth:`PromptOnStdin.stdin_turn`, and the daemon uses it for a
prompt the command line would not hold. The method is optional: a backend without it keeps
working, and a prompt too big for its command line is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

# BackendMode and PermissionPolicy belong to the wire; re-exported for backend plugins.
from agentplex.protocol import BackendMode as BackendMode
from agentplex.protocol import Chunk, ChunkKind, Stream
from agentplex.protocol import PermissionPolicy as PermissionPolicy


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so clients can tell what to expect of its sessions."""

    resume: bool = False
    streamed_deltas: bool = False
    long_lived: bool = False
    tool_events: bool = False
    cost: bool = False
    permission_requests: bool = False


@dataclass(frozen=True)
class SessionSpec:
    """What a backend needs to know about the session it runs."""

    session_id: str
    cwd: Path
    mode: BackendMode = BackendMode.TURN
    persona: str | None = None
    instructions: str | None = None
    """The persona's instructions, to reach the agent however its CLI takes them."""
    model: str | None = None
    allowed_tools: tuple[str, ...] = ()
    permission_policy: PermissionPolicy = PermissionPolicy.ASK
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    scratch_dir: Path = Path()
    """A directory the backend may use for its own files (per daemon, not per session)."""


ChunkData = Chunk
"""What a driver returns: a :class:`Chunk` with only its own fields set (``kind``, ``text``
and what the CLI said); the daemon adds session id, seq, stream and time."""


class Driver:
    """Talks to one agent process. The defaults suit a CLI that only writes lines."""

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        """The chunks one output line (without its newline) stands for; may be empty."""
        return [ChunkData(ChunkKind.TEXT, line)]

    def opening(self) -> bytes:
        """Bytes to write to a long-lived process's stdin as soon as it starts."""
        return b""

    def encode_input(self, message: str) -> bytes:
        """The bytes that deliver ``message`` to a long-lived process's stdin."""
        return message.encode() + b"\n"

    def take_outgoing(self) -> bytes:
        """Bytes the driver wants written to stdin after the lines it just parsed
        (answers to the agent's own requests). Called after every batch of lines."""
        return b""

    def interrupt(self) -> bytes | None:
        """An in-band interrupt for stdin, or None to send SIGINT to the process group."""
        return None

    def resumable_id(self) -> str | None:
        """The CLI's session id once the CLI has saved the conversation, so that a turn
        stopped from now on (interrupted, killed, timed out) can still be resumed; None
        while nothing is saved or the CLI cannot tell. With None the daemon resumes only
        from a turn that exited 0 or reported its result."""
        return None

    def answer_permission(self, request_id: str, allow: bool) -> bytes:
        """The bytes that answer the agent's permission request ``request_id``."""
        raise NotImplementedError(f"{type(self).__name__} takes no permission answers")

    def failure(self) -> str | None:
        """Why the agent can never be talked to (it refused the opening handshake), once
        that is known; the daemon then ends the session as failed, with this reason.
        Checked after every batch of lines."""
        return None


@dataclass(frozen=True)
class Located:
    """Where a backend's CLI was found, or why it was not."""

    available: bool
    executable: str | None = None
    version: str | None = None
    problem: str | None = None


@runtime_checkable
class Backend(Protocol):
    """A backend plugin. Plain class attributes satisfy the read-only members.

    Optional attributes (a backend without them is still a Backend):

    * ``credentials: tuple[str, ...]``: the variables its CLI authenticates with (keys,
      tokens, endpoints, config dirs). The daemon passes them from its own environment
      (or env file, or systemd credentials) to the backend's sessions, and ``backends``
      says which it found.
    * ``credential_files: tuple[str, ...]``: where the CLI keeps a login of its own
      (``~/...``: the daemon's HOME), reported as found when they exist.
    """

    @property
    def id(self) -> str:
        """The id sessions name it by."""
        ...

    @property
    def modes(self) -> tuple[BackendMode, ...]:
        """The modes it supports; the first is the default."""
        ...

    @property
    def description(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def locate(self) -> Located:
        """Find the CLI this backend runs (no process is started; cheap)."""
        ...

    def version(self, executable: str) -> str | None:
        """The CLI's version, if it can be told without running it, else None."""
        ...

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        """The command line for a turn (turn mode) or for the whole session (long-lived).

        ``message`` is the turn's prompt (turn mode only; None for long-lived);
        ``resume_id`` is the CLI's own session id from an earlier turn, if any.
        """
        ...

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        """Variables this backend's CLI needs, on top of the daemon's allowlist."""
        ...

    def driver(self, spec: SessionSpec) -> Driver:
        """A fresh driver for one process."""
        ...


@dataclass(frozen=True)
class StdinTurn:
    """A turn whose prompt the CLI reads from its standard input."""

    argv: list[str]
    """The turn's command line, without the prompt."""
    prompt: bytes
    """What the daemon writes to the CLI's stdin before closing it (UTF-8)."""


@runtime_checkable
class PromptOnStdin(Protocol):
    """The optional method of a turn backend whose CLI can read its prompt from stdin."""

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        """The turn that :meth:`Backend.argv` would run, with ``message`` on stdin instead."""
        ...


def stdin_turn(
    backend: Backend, spec: SessionSpec, message: str, resume_id: str | None
) -> StdinTurn | None:
    """The turn with its prompt on stdin, or None when ``backend`` cannot take it there."""
    if isinstance(backend, PromptOnStdin):
        return backend.stdin_turn(spec, message, resume_id)
    return None


def locate_executable(backend_id: str, default_name: str) -> Located:
    """Find a backend's CLI: ``$AGENTPLEX_<ID>_CLI`` if set (a bare name is looked up on
    PATH), else ``default_name`` on PATH.

    When it is missing, ``problem`` says where the daemon looked.
    """
    variable = f"AGENTPLEX_{backend_id.upper()}_CLI"
    configured = os.environ.get(variable)
    if configured and "/" not in configured:
        found_bare = shutil.which(configured)
        if found_bare:
            return Located(True, executable=found_bare)
        return Located(False, problem=f"{variable}={configured}: not found on PATH")
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return Located(True, executable=str(path))
        return Located(False, problem=f"{variable}={configured} is not an executable file")
    found = shutil.which(default_name)
    if found:
        return Located(True, executable=found)
    return Located(
        False,
        problem=f"{default_name!r} not found on PATH ({os.environ.get('PATH', '')}); "
        f"install it or set {variable}",
    )


def package_version(start: Path, package: str) -> str | None:
    """The ``version`` in the package.json of npm package ``package`` near ``start``.

    npm CLIs are installed as ``node_modules/<package>/``; the executable is usually a
    link or a platform binary somewhere below ``node_modules``. Reading package.json tells
    the version without starting the CLI.
    """
    import json

    for parent in [start.resolve(), *start.resolve().parents]:
        manifest = parent / "node_modules" / package / "package.json"
        if parent.name == "node_modules":
            manifest = parent / package / "package.json"
        if manifest.is_file():
            try:
                version = json.loads(manifest.read_text()).get("version")
            except (OSError, ValueError):
                return None
            return version if isinstance(version, str) else None
    return None
