"""What Linux lets a command line hold, and a turn's command: its prompt in argv while argv
holds it, else on the CLI's standard input.

``execve`` refuses (E2BIG, "Argument list too long") one argument over ``MAX_ARG_STRLEN``
(32 pages: 128 KiB with its NUL) and argv plus environment over a quarter of the stack limit
(``sysconf(SC_ARG_MAX)``, usually 2 MiB). A prompt is one argument, so a pasted file or log
does not fit: such a turn goes through the backend's optional ``stdin_turn``
(plugins/api.py). Ordinary prompts stay in argv, the way every backend test runs its CLI;
a CLI's stdin path has quirks of its own (Gemini waits only 500 ms for piped input, Codex
appends piped input to a prompt given in argv) that only the prompts needing it meet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentplex.plugins.api import Backend, BackendMode, SessionSpec, stdin_turn
from agentplex.protocol.errors import InvalidArgument

MAX_ARG_BYTES = 32 * 4096
"""Linux's ``MAX_ARG_STRLEN``: the most one argument (or ``NAME=value``) may take, NUL included."""

ARG_MAX_MARGIN = 4096
"""Room left below ``SC_ARG_MAX`` for what the daemon adds at spawn: the configured backend
flags, a death-pact wrapper, the program's path."""

POINTER_BYTES = 8


@dataclass(frozen=True)
class TurnCommand:
    """How one turn is started."""

    argv: list[str]
    stdin: bytes | None = None
    """The prompt, written to the CLI's stdin and then closed; None: the prompt is in argv."""


def arg_space() -> int:
    """The bytes argv and environment may take together (``SC_ARG_MAX``)."""
    try:
        return max(os.sysconf("SC_ARG_MAX"), MAX_ARG_BYTES)
    except (OSError, ValueError):  # not known here: assume Linux's floor
        return MAX_ARG_BYTES


def argv_problem(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """Why ``execve`` would refuse ``argv`` (with ``env``) as too long, or None if it fits."""
    for index, arg in enumerate(argv):
        size = len(os.fsencode(arg)) + 1
        if size > MAX_ARG_BYTES:
            return (
                f"argument {index} is {size - 1:,} bytes, over Linux's limit of "
                f"{MAX_ARG_BYTES - 1:,} bytes for one argument"
            )
    strings = [*argv, *(f"{key}={value}" for key, value in (env or {}).items())]
    total = sum(len(os.fsencode(s)) + 1 + POINTER_BYTES for s in strings)
    space = arg_space() - ARG_MAX_MARGIN
    if total > space:
        return (
            f"the command line and environment take {total:,} bytes, over the "
            f"{space:,} bytes Linux leaves them"
        )
    return None


def turn_command(
    backend: Backend,
    spec: SessionSpec,
    message: str,
    resume_id: str | None,
    env: Mapping[str, str] | None = None,
) -> TurnCommand:
    """The turn's command: ``backend.argv`` if it fits, else the prompt on stdin.

    Raises InvalidArgument when neither will do (an argument too long and a backend that
    cannot read a prompt from stdin), naming the limit, before anything is logged or
    spawned; :func:`start_argv` makes the same check before a session is created.
    """
    argv = backend.argv(spec, message, resume_id)
    if argv_problem(argv, env) is None:
        return TurnCommand(argv)
    piped = piped_command(backend, spec, message, resume_id)
    if piped is not None:
        return piped
    problem = argv_problem(argv)
    if problem is None:  # too long only with the environment: the spawn says so (E2BIG)
        return TurnCommand(argv)
    raise InvalidArgument(
        f"the prompt does not fit a {backend.id!r} command line ({problem}) and backend "
        f"{backend.id!r} cannot read it from stdin; shorten it or put it in a file"
    )


def piped_command(
    backend: Backend, spec: SessionSpec, message: str, resume_id: str | None
) -> TurnCommand | None:
    """The turn with its prompt on stdin, or None if the backend cannot take it there."""
    turn = stdin_turn(backend, spec, message, resume_id)
    return None if turn is None else TurnCommand(turn.argv, turn.prompt)


def checked_command(argv: list[str]) -> list[str]:
    """``argv`` of a long-lived agent (or an ``exec`` command), refused at once with
    InvalidArgument when ``execve`` could not take it: no failed session is left behind."""
    problem = argv_problem(argv)
    if problem is not None:
        raise InvalidArgument(f"the command cannot be started: {problem}")
    return argv


def start_argv(backend: Backend, spec: SessionSpec, prompt: str | None) -> list[str]:
    """The command a new session starts with (its first turn's, or its long-lived agent's),
    refused with InvalidArgument when it could not be started at all."""
    if spec.mode is BackendMode.TURN and prompt is not None:
        return turn_command(backend, spec, prompt, None).argv
    return checked_command(backend.argv(spec, prompt, None))
