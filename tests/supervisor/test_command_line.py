"""A turn's command: its prompt in argv while Linux takes it there, else on stdin, else
refused with a clear error before anything is spawned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    Driver,
    Located,
    SessionSpec,
    StdinTurn,
)
from agentplex.plugins.demo import DemoBackend
from agentplex.plugins.exec_backend import ExecBackend
from agentplex.protocol.errors import InvalidArgument
from agentplex.supervisor.command_line import (
    MAX_ARG_BYTES,
    TurnCommand,
    arg_space,
    argv_problem,
    start_argv,
    turn_command,
)

SPEC = SessionSpec(session_id="s-1", cwd=Path("/work"))
FITS = "x" * (MAX_ARG_BYTES - 1)
"""The longest argument Linux takes (its NUL makes MAX_ARG_BYTES)."""


class ArgvOnlyBackend:
    """A third-party turn backend from before ``stdin_turn``: the prompt goes in argv only."""

    id = "argv-only"
    modes = (BackendMode.TURN,)
    description = "a CLI that takes its prompt as an argument"
    capabilities = Capabilities()

    def locate(self) -> Located:
        return Located(True, executable="/bin/echo")

    def version(self, executable: str) -> str | None:
        return None

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        return ["/bin/echo", message or ""]

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}

    def driver(self, spec: SessionSpec) -> Driver:
        return Driver()


def test_one_argument_fits_up_to_linux_limit_for_a_single_string() -> None:
    assert argv_problem(["echo", FITS]) is None
    problem = argv_problem(["echo", FITS + "x"])
    assert (
        problem
        == "argument 1 is 131,072 bytes, over Linux's limit of 131,071 bytes for one argument"
    )


def test_bytes_count_not_characters() -> None:
    assert argv_problem(["echo", "é" * (MAX_ARG_BYTES // 2)]) is not None  # 2 bytes each


def test_argv_and_environment_together_must_fit_arg_max() -> None:
    pieces = ["y" * 100_000] * (arg_space() // 100_000 + 1)
    problem = argv_problem(["echo", *pieces])
    assert problem is not None and "the command line and environment take" in problem
    env = {f"V{i}": piece for i, piece in enumerate(pieces)}
    assert argv_problem(["echo"], env) is not None
    assert argv_problem(["echo"]) is None


def test_a_prompt_argv_holds_stays_in_argv() -> None:
    command = turn_command(DemoBackend(), SPEC, FITS[:-200], None)
    assert command.stdin is None
    assert FITS[:-200] in command.argv


def test_a_prompt_argv_cannot_hold_goes_to_stdin_whole() -> None:
    prompt = "é" * 100_000  # 200,000 bytes of UTF-8
    command = turn_command(DemoBackend(), SPEC, prompt, "r-1")
    assert command == TurnCommand(
        [*DemoBackend().stdin_turn(SPEC, prompt, "r-1").argv], prompt.encode()
    )
    assert command.argv[-1] == "-p"


def test_a_prompt_that_fits_only_without_the_environment_goes_to_stdin() -> None:
    prompt = "z" * 100_000
    big_env = {f"V{i}": "e" * 100_000 for i in range(arg_space() // 100_000)}
    assert turn_command(DemoBackend(), SPEC, prompt, None).stdin is None
    assert turn_command(DemoBackend(), SPEC, prompt, None, big_env).stdin == prompt.encode()


def test_a_backend_without_stdin_turn_is_refused_a_prompt_argv_cannot_hold() -> None:
    backend = ArgvOnlyBackend()
    assert turn_command(backend, SPEC, "hi", None) == TurnCommand(["/bin/echo", "hi"])
    with pytest.raises(InvalidArgument, match=r"131,071 bytes.*cannot read it from stdin"):
        turn_command(backend, SPEC, FITS + "x", None)
    with pytest.raises(InvalidArgument, match="131,071 bytes"):
        start_argv(backend, SPEC, FITS + "x")


def test_a_too_long_environment_alone_is_left_to_the_spawn_to_report() -> None:
    big_env = {f"V{i}": "e" * 100_000 for i in range(arg_space() // 100_000 + 1)}
    command = turn_command(ArgvOnlyBackend(), SPEC, "hi", None, big_env)
    assert command == TurnCommand(["/bin/echo", "hi"])  # spawn says E2BIG, as for any command


def test_a_session_starts_with_the_command_its_first_turn_runs() -> None:
    prompt = "w" * 200_000
    assert (
        start_argv(DemoBackend(), SPEC, prompt) == DemoBackend().stdin_turn(SPEC, prompt, None).argv
    )
    assert start_argv(DemoBackend(), SPEC, "hi") == DemoBackend().argv(SPEC, "hi", None)


def test_a_long_lived_command_linux_cannot_take_is_refused() -> None:
    spec = SessionSpec(
        session_id="s-1", cwd=Path("/work"), mode=BackendMode.LONG_LIVED, command=("cat", FITS)
    )
    assert start_argv(ExecBackend(), spec, None) == ["cat", FITS]
    too_long = SessionSpec(
        session_id="s-1",
        cwd=Path("/work"),
        mode=BackendMode.LONG_LIVED,
        command=("cat", FITS + "x"),
    )
    with pytest.raises(InvalidArgument, match="the command cannot be started: argument 1"):
        start_argv(ExecBackend(), too_long, None)


def test_the_stdin_turn_type_is_what_backends_return() -> None:
    turn = DemoBackend().stdin_turn(SPEC, "hi", None)
    assert isinstance(turn, StdinTurn)
    assert os.path.basename(turn.argv[0]).startswith("python")
