"""Prompts and messages of any practical size reach every backend (issue 13, item 2).

Linux takes at most 128 KiB in one argument, so a turn's prompt that argv would not hold
goes to the CLI's standard input instead. Each real CLI runs under the real daemon against
its fake model API; the fakes answer a ``DIGEST`` prompt with its size and sha256, and
record the request, so the tests check that the whole prompt arrived, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import FakeAnthropic, FakeGemini, FakeOpenAIResponses, claude_env, codex_env
from fakes.clis import gemini_env
from fakes.server import FakeServer
from support import DaemonProcess, became, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.plugins.api import BackendMode, SessionSpec, StdinTurn, stdin_turn
from agentplex.plugins.claude import ClaudeBackend
from agentplex.plugins.codex import CodexBackend
from agentplex.plugins.demo import DemoBackend
from agentplex.plugins.gemini import INSTRUCTIONS_PREAMBLE, GeminiBackend
from agentplex.protocol.errors import InvalidArgument
from agentplex.supervisor.command_line import arg_space

MEGABYTE = 1_000_000
"""A megabyte: Codex refuses a prompt over 1 MiB characters (its own input limit)."""
TURN_TIMEOUT = 120.0
"""Generous: a 1 MB prompt crosses the wire, the transcript, a pipe and a fake API."""


def big_prompt(label: str, size: int = MEGABYTE) -> str:
    """A ``DIGEST`` prompt of ``size`` characters whose words differ along the way, so a
    prompt cut, reordered or doubled anywhere has another digest."""
    words = [f"{label}{i}" for i in range(size // 6)]
    text = "DIGEST " + " ".join(words)
    return text[:size].rstrip() + " end"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def spec(**fields: object) -> SessionSpec:
    # A backend's own files go under scratch_dir: never the checkout (Path() is the cwd).
    fields.setdefault("scratch_dir", Path(tempfile.gettempdir()) / "agentplex-test-scratch")
    return SessionSpec(session_id="s-1", cwd=Path("/work"), **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the backends


@pytest.mark.parametrize("resume_id", [None, "r-1"])
def test_every_turn_backend_runs_the_same_turn_with_the_prompt_on_stdin(
    resume_id: str | None,
) -> None:
    message = "-looks like a flag"
    for backend in (DemoBackend(), ClaudeBackend(), CodexBackend(), GeminiBackend()):
        turn = stdin_turn(backend, spec(model="m-1"), message, resume_id)
        assert isinstance(turn, StdinTurn), backend.id
        assert turn.prompt == message.encode()
        assert message not in turn.argv, backend.id
        argv = backend.argv(spec(model="m-1"), message, resume_id)
        assert turn.argv[0] == argv[0]
        assert set(turn.argv) - {"-"} <= set(argv), backend.id  # the same flags, no prompt
        assert ("r-1" in turn.argv) == (resume_id is not None), backend.id


def test_claude_and_demo_read_stdin_when_print_has_no_prompt_and_codex_is_given_a_dash() -> None:
    assert ClaudeBackend().stdin_turn(spec(), "hi", None).argv[1] == "-p"
    assert "--" not in ClaudeBackend().stdin_turn(spec(), "hi", None).argv
    assert DemoBackend().stdin_turn(spec(), "hi", "r-1").argv[-1] == "-p"
    assert CodexBackend().stdin_turn(spec(), "hi", "r-1").argv[-3:] == ["resume", "r-1", "-"]


def test_gemini_sends_the_persona_instructions_with_the_first_prompt_on_stdin() -> None:
    persona = spec(instructions="Answer in haiku.")
    first = GeminiBackend().stdin_turn(persona, "hello", None)
    assert first.prompt.decode().startswith(INSTRUCTIONS_PREAMBLE)
    assert first.prompt.decode().endswith("\n\nhello")
    assert not [arg for arg in first.argv if arg.startswith("--prompt")]
    assert GeminiBackend().stdin_turn(persona, "again", "r-1").prompt == b"again"


def test_a_backend_that_runs_only_long_lived_offers_no_stdin_turn() -> None:
    from agentplex.plugins.exec_backend import ExecBackend

    backend = ExecBackend()
    assert backend.modes == (BackendMode.LONG_LIVED,)
    assert stdin_turn(backend, spec(), "hi", None) is None


# --------------------------------------------------------------------------- the demo backend


def test_a_prompt_over_128_kib_starts_a_demo_session(client: Client) -> None:
    prompt = "word " * 28_000  # 140,000 bytes: one argument too many for Linux
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("demo", prompt, env={"AGENTPLEX_DEMO_DELAY": "0"})
        result = turn_result(events, info.id)
    assert f"You said: {len(prompt)} characters with sha256 {digest(prompt)}" in result.text
    assert client.inspect(info.id).status is p.SessionStatus.IDLE


def test_a_megabyte_prompt_and_a_megabyte_send_reach_the_demo_agent(client: Client) -> None:
    first, second = big_prompt("a"), big_prompt("b")
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("demo", first, env={"AGENTPLEX_DEMO_DELAY": "0"})
        one = turn_result(events, info.id)
        client.send(second, info.id)
        two = turn_result(events, info.id)
    assert f"Turn 1. You said: {len(first)} characters with sha256 {digest(first)}" in one.text
    assert f"Turn 2. You said: {len(second)} characters with sha256 {digest(second)}" in two.text
    assert f"Before that you said: {len(first)} characters with sha256 {digest(first)}" in (
        two.text
    )


def test_a_command_argument_linux_cannot_take_is_refused_and_leaves_no_session(
    client: Client, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="131,071 bytes"):
        client.start("exec", argv=["echo", "x" * 200_000], cwd=tmp_path)
    assert client.list(all=True).sessions == []
    assert client.start("exec", argv=["echo", "x" * 100_000], cwd=tmp_path).id  # still fits


def test_a_turn_the_kernel_finds_too_long_after_all_is_retried_with_the_prompt_on_stdin(
    short_tmp: Path,
) -> None:
    """The configured backend flags join argv at spawn, after the daemon measured it: a
    prompt that fits alone but not beside them gets E2BIG, and the turn runs from stdin."""
    pad = 100_000
    count = (arg_space() - 60_000) // (pad + 20)
    flags = ", ".join(f'"-X", "pad{i}={"p" * pad}"' for i in range(count))  # python ignores -X keys
    config = short_tmp / "config.toml"
    config.write_text(f"[backends.demo]\nflags = [{flags}]\n")
    daemon = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_CONFIG": str(config)})
    prompt = big_prompt("c", 100_000)  # fits one argument; not beside ~2 MB of flags
    try:
        with (
            daemon.client(timeout=60.0) as client,
            client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events,
        ):
            info = client.start("demo", prompt, env={"AGENTPLEX_DEMO_DELAY": "0"})
            result = turn_result(events, info.id)
            transcript = Path(client.inspect(info.id).transcript)
    finally:
        assert daemon.stop() == 0
    assert f"You said: {len(prompt)} characters with sha256 {digest(prompt)}" in result.text
    spawned = [line for line in transcript.read_text().splitlines() if "process.spawned" in line]
    [argv] = [json.loads(line)["argv"] for line in spawned]
    assert argv[-1] == "-p" and prompt not in argv  # the prompt went on stdin
    assert sum(len(arg) + 1 for arg in argv) + len(prompt) > arg_space()  # as argv: E2BIG


# --------------------------------------------------------------------------- the real CLIs


Start = Callable[[Client, str], p.SessionInfo]
FAKES: dict[str, tuple[type[FakeServer], Callable[[Path, str], dict[str, str]], dict[str, str]]]
FAKES = {
    "claude": (FakeAnthropic, claude_env, {}),
    "codex": (FakeOpenAIResponses, codex_env, {"permission_policy": "deny"}),
    "gemini": (FakeGemini, gemini_env, {"permission_policy": "deny", "model": "gemini-2.5-flash"}),
}
"""Per CLI: its fake API, the environment that points the CLI at it, the start options."""


@pytest.fixture(params=sorted(FAKES))
def real_cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FakeServer, Start]]:
    """A fake model API and how to start a session of its CLI against it."""
    backend = request.param
    server, cli_env, options = FAKES[backend]
    project = tmp_path / "project"
    project.mkdir()
    with server() as fake:

        def start(client: Client, prompt: str) -> p.SessionInfo:
            env = cli_env(tmp_path / "home", fake.url)
            return client.start(backend, prompt, cwd=project, env=env, **options)  # type: ignore[arg-type]

        yield fake, start


@pytest.fixture
def cli_client(backend_daemon: DaemonProcess) -> Iterator[Client]:
    with backend_daemon.client(timeout=60.0) as c:
        yield c


def test_a_megabyte_prompt_and_a_megabyte_send_reach_each_real_cli(
    cli_client: Client, real_cli: tuple[FakeServer, Start]
) -> None:
    fake, start = real_cli
    first, second = big_prompt("a"), big_prompt("b")
    with cli_client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(cli_client, first)
        one = turn_result(events, info.id)
        cli_client.send(second, info.id)
        two = turn_result(events, info.id)

    assert f"Prompt of {len(first)} characters, sha256 {digest(first)}" in one.text
    assert f"Prompt of {len(second)} characters, sha256 {digest(second)}" in two.text
    # Each turn's request ends with its prompt, whole (Codex may compact the history of a
    # resumed thread this large, so earlier prompts are not compared).
    requests = fake.model_requests()
    assert fake.conversation(requests[0]).prompts == [first]
    assert fake.conversation(requests[-1]).prompts[-1] == second
    assert cli_client.inspect(info.id).turns == 2


def turn_result(events: SyncSubscription, session_id: str) -> p.Chunk:
    """The result of the session's running turn, once the session is idle again; fails
    naming the errors if the turn ended without a successful result."""
    chunks: list[p.Chunk] = []
    idle = became(session_id, p.SessionStatus.IDLE)

    def ended(event: p.Event) -> bool:
        if is_chunk(session_id)(event):
            assert isinstance(event, p.Chunk)
            chunks.append(event)
        return idle(event)

    next_event(events, ended, TURN_TIMEOUT)
    errors = [c.text[:500] for c in chunks if c.is_error or c.kind is p.ChunkKind.ERROR]
    results = [c for c in chunks if c.kind is p.ChunkKind.RESULT and not c.is_error]
    assert len(results) == 1 and not errors, errors
    return results[0]
