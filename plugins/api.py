"""What a backend plugin is: how to start an agent, continue it, and read what it says.

A backend is registered in the daemon's ``BackendRegistry`` by its id: the built-in ones
plus any object exposed through the ``agentplex.backends`` entry-point group (the entry
point names a zero-argument callable, usually the class, that returns a ``Backend``).
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentplex.client.protocol import ChunkKind, Stream, Usage


class BackendMode(enum.StrEnum):
    """How a backend carries a conversation across messages."""

    TURN = "turn"
    """One process per turn, continued through the agent's own resume id."""
    LONG_LIVED = "long_lived"
    """One process for the whole session, each message written to its stdin."""


@dataclass(frozen=True)
class SessionSpec:
    """What a backend needs to know about the session it runs."""

    session_id: str
    cwd: Path
    persona: str | None = None
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    scratch_dir: Path = Path()
    """A directory the backend may use for its own files (per daemon, not per session)."""


@dataclass(frozen=True, slots=True)
class ChunkData:
    """One chunk as a parser sees it; the daemon adds session id, seq, stream and time."""

    kind: ChunkKind
    text: str
    partial: bool = False
    tool_name: str | None = None
    tool_input: Any = None
    is_error: bool = False
    usage: Usage | None = None
    cli_session_id: str | None = None
    model: str | None = None


class OutputParser(Protocol):
    """Turns the lines of one process into chunks. A new parser is made per process."""

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        """The chunks one output line (without its newline) stands for; may be empty."""
        ...


@dataclass(frozen=True)
class Located:
    """Where a backend's CLI was found, or why it was not."""

    available: bool
    executable: str | None = None
    version: str | None = None
    problem: str | None = None


@runtime_checkable
class Backend(Protocol):
    """A backend plugin."""

    id: str
    mode: BackendMode
    description: str

    def locate(self) -> Located:
        """Find the CLI this backend runs (cheap; no process is started)."""
        ...

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        """The command line for a turn (turn-based) or for the session (long-lived).

        ``message`` is the turn's prompt (turn-based only; None for long-lived);
        ``resume_id`` is the CLI's own session id from an earlier turn, if any.
        """
        ...

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        """Variables this backend's CLI needs, on top of the daemon's allowlist."""
        ...

    def parser(self) -> OutputParser:
        """A fresh parser for one process's output."""
        ...

    def encode_input(self, message: str) -> bytes:
        """The bytes that deliver ``message`` to a long-lived process's stdin."""
        ...


class PlainLines:
    """Each line is a ``text`` chunk: for programs that do not speak a JSON dialect."""

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        return [ChunkData(ChunkKind.TEXT, line)]


def locate_executable(name: str) -> Located:
    """Find ``name`` on PATH (or as a path), saying where it looked when it is missing."""
    if "/" in name:
        path = Path(name)
        if path.is_file():
            return Located(True, executable=str(path))
        return Located(False, problem=f"{name} does not exist or is not a file")
    found = shutil.which(name)
    if found:
        return Located(True, executable=found)
    return Located(False, problem=f"{name!r} not found on PATH")
