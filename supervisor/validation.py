"""Checks on what requests carry: names, working directories, environments, prompts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agentplex.protocol.errors import BadCwd, EmptyPrompt, InvalidArgument, InvalidName

MAX_NAME = 128
MAX_NAME_BYTES = 200
"""A name is a directory name (tags) or part of a file name (personas): encoded, it must
fit the file system's 255-byte limit on a name, with room to spare."""
UNTAGGED = "untagged"
"""The transcripts directory of sessions started without a tag (no tag may be named so)."""


def validate_name(kind: str, value: str | None) -> str | None:
    """A tag or persona name safe to use as a directory name, or None.

    Refused: empty, over 128 characters or 200 bytes of UTF-8, unprintable characters,
    path separators, ``..``.
    """
    if value is None:
        return None
    problem = _name_problem(value)
    if kind == "tag" and value == UNTAGGED:
        problem = "it is reserved: the directory of sessions without a tag"
    if problem:
        raise InvalidName(f"invalid {kind} {value[:40]!r}: {problem}")
    return value


def _name_problem(value: str) -> str | None:
    if not value or not value.strip():
        return "it is empty"
    if len(value) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes of UTF-8, more than {MAX_NAME_BYTES}"
    if not value.isprintable():
        return "it contains unprintable characters"
    if "/" in value or "\\" in value:
        return "it contains a path separator"
    if ".." in value:
        return "it contains '..'"
    if value.startswith("."):
        return "it starts with '.'"
    return None


def resolve_cwd(cwd: str | None) -> Path:
    """The session's working directory: an existing directory (default: the daemon's)."""
    path = Path(cwd) if cwd else Path.cwd()
    if not path.is_absolute():
        raise BadCwd(f"working directory {cwd!r} is not an absolute path")
    if not path.is_dir():
        raise BadCwd(f"working directory {cwd} does not exist or is not a directory")
    return path


def validate_env(env: Mapping[str, str]) -> dict[str, str]:
    """Environment overrides with names a process can have."""
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InvalidArgument(f"invalid environment variable {key!r}")
    return dict(env)


def require_text(what: str, text: str | None) -> str:
    """A prompt or message that is not empty or blank, and has no NUL (argv cannot)."""
    if text is None or not text.strip():
        raise EmptyPrompt(f"the {what} is empty")
    if "\0" in text:
        raise InvalidArgument(f"the {what} contains a NUL character")
    return text


def build_environment(
    allowlist: tuple[str, ...],
    daemon_env: Mapping[str, str],
    backend_env: Mapping[str, str],
    overrides: Mapping[str, str],
    marker: tuple[str, str],
) -> dict[str, str]:
    """A session's explicit environment: allowlisted daemon vars, then the backend's
    needs, then the session's overrides, then the session marker."""
    env = {key: daemon_env[key] for key in allowlist if key in daemon_env}
    env.update(backend_env)
    env.update(overrides)
    env[marker[0]] = marker[1]
    return env
