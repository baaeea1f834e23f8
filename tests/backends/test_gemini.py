"""The gemini backend: its stream-json driver on Gemini CLI's own lines, its command line, and
the real Gemini CLI run by the real daemon against FakeGemini.

The sample lines are verbatim from tests/fakes/README.md (Gemini CLI 0.61.0 against the fake),
except ``TOOL_RESULT_ERROR`` and ``WARNING``, whose shape is taken from the CLI's source
(``nonInteractiveCli``) because the fake cannot make Gemini write them.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from fakes.clis import gemini_env
from fakes.gemini_api import FakeGemini
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import DaemonProcess, became, descendants_with_marker, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.plugins.api import ChunkData, PermissionPolicy, SessionSpec
from agentplex.plugins.gemini import (
    INSTRUCTIONS_PREAMBLE,
    TOOL_NAMES,
    GeminiBackend,
    GeminiStreamParser,
    deny_policy,
)
from agentplex.plugins.gemini_lock import REGISTRY_LOCK
from agentplex.protocol import ChunkKind, Stream, Usage
from agentplex.protocol.errors import InvalidArgument

MODEL = "gemini-2.5-flash"
"""A fixed model keeps Gemini's router (an extra model call per turn) out of the way."""
TURN_TIMEOUT = 60.0
"""Gemini CLI takes 1 to 4 s per turn here; generous for a loaded machine. (Resumed turns that
took 13 to 51 s were waiting on a lock an earlier Gemini process left: plugins/gemini_lock.py.)"""
ORPHAN_STALL = 12.7
"""Seconds a Gemini process waits on an orphaned ``projects.json.lock`` at least: its lock
retries back off 0.1, 0.2, ... 6.4 s (12.7 s in all) before one finds the lock stale (10 s)."""
SID = "e8bae66c-72ce-451a-b43d-00c513542af6"

INIT = (
    '{"type":"init","timestamp":"2026-11-21T17:30:51.810Z",'
    '"session_id":"e8bae66c-72ce-451a-b43d-00c513542af6","model":"gemini-2.5-flash"}'
)
USER = (
    '{"type":"message","timestamp":"2026-11-21T17:30:51.813Z","role":"user","content":"say hello"}'
)
DELTA = (
    '{"type":"message","timestamp":"2026-11-21T17:30:51.900Z","role":"assistant",'
    '"content":"Hello from fa","delta":true}'
)
RESULT = (
    '{"type":"result","timestamp":"2026-11-21T17:30:52.046Z","status":"success","stats":'
    '{"total_tokens":7825,"input_tokens":7807,"output_tokens":18,"cached":0,"input":7807,'
    '"duration_ms":237,"tool_calls":0,"models":{"gemini-2.5-flash":{"total_tokens":7825,'
    '"input_tokens":7807,"output_tokens":18,"cached":0,"input":7807}}}}'
)
TOOL_USE = (
    '{"type":"tool_use","timestamp":"2026-11-21T17:30:56.472Z","tool_name":"run_shell_command",'
    '"tool_id":"run_shell_command__run_shell_command_1795282256340_0","parameters":'
    '{"command":"echo smoke-tool-ok","description":"Run a command"}}'
)
TOOL_RESULT = (
    '{"type":"tool_result","timestamp":"2026-11-21T17:30:56.928Z",'
    '"tool_id":"run_shell_command__run_shell_command_1795282256340_0","status":"success",'
    '"output":"smoke-tool-ok"}'
)
TOOL_RESULT_FAILED_COMMAND = (
    '{"type":"tool_result","timestamp":"2026-11-21T17:29:24.837Z",'
    '"tool_id":"run_shell_command__run_shell_command_1795282164739_0","status":"success",'
    '"output":"ls: cannot access \'/nonexistent-dir\': No such file or directory"}'
)
RESULT_API_ERROR = (
    '{"type":"result","timestamp":"2026-11-21T17:30:59.981Z","status":"error","error":'
    '{"type":"unknown","message":"[API Error: {\\"error\\":{\\"code\\":500,\\"message\\":'
    '\\"Fake Gemini: HTTP 500 on request (FAIL500)\\",\\"status\\":\\"INTERNAL\\"}}]"},'
    '"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,'
    '"duration_ms":0,"tool_calls":0,"models":{"gemini-2.5-flash":{"total_tokens":0,'
    '"input_tokens":0,"output_tokens":0,"cached":0,"input":0}}}}'
)
TOOL_RESULT_ERROR = (
    '{"type":"tool_result","timestamp":"…","tool_id":"read_file__1","status":"error",'
    '"error":{"type":"file_not_found","message":"File not found: /nope"}}'
)
WARNING = (
    '{"type":"error","timestamp":"…","severity":"warning","message":"Loop detected, stopping"}'
)


def parse(*lines: str) -> list[ChunkData]:
    """The chunks one driver makes of ``lines`` (stdout), in order."""
    driver = GeminiStreamParser()
    return [chunk for line in lines for chunk in driver.parse(line, Stream.STDOUT)]


# --------------------------------------------------------------------------- driver


def test_init_carries_gemini_session_id_and_model_as_a_system_chunk() -> None:
    [chunk] = parse(INIT)
    assert chunk.kind is ChunkKind.SYSTEM
    assert chunk.cli_session_id == SID
    assert chunk.model == "gemini-2.5-flash"


def test_assistant_deltas_are_partial_text_and_the_prompt_echo_is_system() -> None:
    user, delta = parse(USER, DELTA)
    assert (user.kind, user.text) == (ChunkKind.SYSTEM, "user: say hello")
    assert (delta.kind, delta.text, delta.partial) == (ChunkKind.TEXT, "Hello from fa", True)


def test_an_assistant_message_without_delta_is_whole_text() -> None:
    [chunk] = parse('{"type":"message","role":"assistant","content":"All of it"}')
    assert (chunk.kind, chunk.text, chunk.partial) == (ChunkKind.TEXT, "All of it", False)


def test_tool_use_and_tool_result_become_typed_chunks() -> None:
    use, result = parse(TOOL_USE, TOOL_RESULT)
    assert use.kind is ChunkKind.TOOL_USE
    assert use.tool_name == "run_shell_command"
    assert use.tool_input == {"command": "echo smoke-tool-ok", "description": "Run a command"}
    assert use.text == "run_shell_command: echo smoke-tool-ok"
    assert (result.kind, result.text, result.is_error) == (
        ChunkKind.TOOL_RESULT,
        "smoke-tool-ok",
        False,
    )


def test_a_failing_command_is_not_a_tool_error_because_gemini_says_success() -> None:
    [chunk] = parse(TOOL_RESULT_FAILED_COMMAND)
    assert chunk.kind is ChunkKind.TOOL_RESULT
    assert "No such file or directory" in chunk.text
    assert not chunk.is_error


def test_a_tool_that_could_not_run_is_a_tool_error_with_its_message() -> None:
    [chunk] = parse(TOOL_RESULT_ERROR)
    assert (chunk.kind, chunk.text, chunk.is_error) == (
        ChunkKind.TOOL_RESULT,
        "File not found: /nope",
        True,
    )


def test_result_has_the_usage_and_the_reply_written_since_the_last_tool_call() -> None:
    chunks = parse(
        INIT,
        '{"type":"message","role":"assistant","content":"Running a command.","delta":true}',
        TOOL_USE,
        TOOL_RESULT,
        '{"type":"message","role":"assistant","content":"Tool said: ","delta":true}',
        '{"type":"message","role":"assistant","content":"smoke-tool-ok","delta":true}',
        RESULT,
    )
    result = chunks[-1]
    assert result.kind is ChunkKind.RESULT
    assert result.text == "Tool said: smoke-tool-ok"
    assert not result.is_error
    assert result.usage == Usage(
        input_tokens=7807, output_tokens=18, cached_tokens=0, duration_ms=237
    )


def test_an_error_result_also_gives_an_error_chunk_with_the_message() -> None:
    error, result = parse(RESULT_API_ERROR)
    assert error.kind is ChunkKind.ERROR and error.is_error
    assert "FAIL500" in error.text
    assert result.kind is ChunkKind.RESULT and result.is_error
    assert result.text == error.text


def test_an_error_event_is_an_error_chunk_or_a_warning_by_its_severity() -> None:
    [warning] = parse(WARNING)
    assert (warning.kind, warning.text) == (ChunkKind.SYSTEM, "warning: Loop detected, stopping")
    [error] = parse('{"type":"error","severity":"error","message":"Maximum session turns"}')
    assert (error.kind, error.text, error.is_error) == (
        ChunkKind.ERROR,
        "Maximum session turns",
        True,
    )


@pytest.mark.parametrize(
    "line",
    ["Ripgrep is not available. Falling back to GrepTool.", "[1, 2]", '"init"', "{", ""],
)
def test_a_line_that_is_not_a_json_object_is_raw(line: str) -> None:
    assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_a_known_type_that_does_not_fit_the_schema_is_raw() -> None:
    line = '{"type":"message","role":"assistant","content":["not","text"]}'
    assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_an_unknown_type_is_a_system_chunk_naming_it() -> None:
    assert parse('{"type":"compression","tokens":9}') == [
        ChunkData(ChunkKind.SYSTEM, "compression")
    ]


def test_stderr_lines_are_raw_even_when_they_look_like_events() -> None:
    assert GeminiStreamParser().parse(INIT, Stream.STDERR) == [ChunkData(ChunkKind.RAW, INIT)]


_FIELDS = (
    "session_id",
    "model",
    "role",
    "content",
    "delta",
    "tool_name",
    "tool_id",
    "parameters",
    "status",
    "output",
    "error",
    "severity",
    "message",
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_stats = st.dictionaries(
    st.sampled_from(("input_tokens", "output_tokens", "cached", "duration_ms")), _json
)
_events = st.builds(
    lambda kind, fields, stats: {**fields, "stats": stats, "type": kind},
    st.sampled_from(("init", "message", "tool_use", "tool_result", "error", "result", "other")),
    st.dictionaries(st.sampled_from(_FIELDS) | st.text(), _json, max_size=6),
    _stats | _json,
)
_lines = st.text() | _events.map(json.dumps) | _json.map(json.dumps)


@settings(max_examples=200, deadline=None)
@given(st.lists(_lines, max_size=6), st.sampled_from(list(Stream)))
def test_parse_never_raises_and_always_returns_chunks(lines: list[str], stream: Stream) -> None:
    driver = GeminiStreamParser()
    for line in lines:
        chunks = driver.parse(line, stream)
        assert chunks and all(isinstance(chunk, ChunkData) for chunk in chunks)


# --------------------------------------------------------------------------- backend


def spec(**overrides: object) -> SessionSpec:
    # The deny policy file goes under scratch_dir: never the checkout (Path() is the cwd).
    overrides.setdefault("scratch_dir", Path(tempfile.gettempdir()) / "agentplex-test-scratch")
    return SessionSpec(session_id="s1", cwd=Path("/work"), **overrides)  # type: ignore[arg-type]


def test_argv_asks_for_stream_json_in_a_trusted_folder_with_the_prompt_in_one_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTPLEX_GEMINI_CLI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    argv = GeminiBackend().argv(
        spec(permission_policy=PermissionPolicy.ALLOW), "-v is not a flag here", None
    )
    assert argv == [
        "gemini",
        "--output-format",
        "stream-json",
        "--skip-trust",
        "--yolo",
        "--prompt=-v is not a flag here",
    ]


def test_argv_maps_model_resume_and_only_the_allow_policy_to_yolo() -> None:
    backend = GeminiBackend()
    allowed = backend.argv(spec(model=MODEL, permission_policy=PermissionPolicy.ALLOW), "hi", "r1")
    assert allowed[1:] == [
        "--output-format",
        "stream-json",
        "--skip-trust",
        "-m",
        MODEL,
        "--yolo",
        "--resume",
        "r1",
        "--prompt=hi",
    ]


@pytest.mark.parametrize("policy", [PermissionPolicy.ASK, PermissionPolicy.DENY])
def test_deny_pins_the_default_approval_mode_under_an_admin_policy(
    tmp_path: Path, policy: PermissionPolicy
) -> None:
    # ask too: a session recorded with ask before it was refused must not get more
    session = spec(permission_policy=policy, scratch_dir=tmp_path, allowed_tools=("Read", "Bash"))
    argv = GeminiBackend().argv(session, "hi", None)
    assert "--yolo" not in argv
    assert argv[argv.index("--approval-mode") + 1] == "default"
    policy_file = Path(argv[argv.index("--admin-policy") + 1])
    assert policy_file.parent == tmp_path / "gemini"
    assert policy_file.stat().st_mode & 0o077 == 0
    assert policy_file.read_text() == deny_policy(("Read", "Bash"))
    assert GeminiBackend().argv(session, "again", "r1") == [
        *argv[:-1],
        "--resume",
        "r1",
        "--prompt=again",
    ]


def test_the_deny_policy_denies_every_tool_but_the_allowed_ones_by_gemini_name() -> None:
    everything, allowed = tomllib.loads(deny_policy(("Read", "Grep", "Glob", "my_mcp_tool")))[
        "rule"
    ]
    assert (everything["toolName"], everything["decision"]) == ("*", "deny")
    assert allowed["decision"] == "allow" and allowed["priority"] > everything["priority"]
    assert allowed["toolName"] == [
        "read_file",
        "read_many_files",
        "grep_search",
        "glob",
        "list_directory",
        "my_mcp_tool",
    ]
    [_, read_only] = tomllib.loads(deny_policy(()))["rule"]
    assert "run_shell_command" not in read_only["toolName"]
    assert "read_file" in read_only["toolName"]


@settings(max_examples=100)
@given(st.lists(st.text(), max_size=4))
def test_any_tool_name_survives_the_policy_file_quoting(names: list[str]) -> None:
    assume(all(name not in TOOL_NAMES for name in names) and names)
    [_, allowed] = tomllib.loads(deny_policy(tuple(names)))["rule"]
    assert allowed["toolName"] == list(dict.fromkeys(names))


def test_ask_is_refused_naming_the_acp_backend_and_no_policy_means_deny() -> None:
    backend = GeminiBackend()
    with pytest.raises(InvalidArgument, match="gemini --acp"):
        backend.check_policy(spec(permission_policy=PermissionPolicy.ASK))
    for policy in (PermissionPolicy.DENY, PermissionPolicy.ALLOW):
        backend.check_policy(spec(permission_policy=policy))
    assert backend.default_policy is PermissionPolicy.DENY
    assert set(backend.policies) == set(PermissionPolicy)


def test_the_result_usage_is_the_turn_own() -> None:
    [result] = parse(RESULT)
    assert result.usage is not None and result.usage.scope is p.UsageScope.TURN


def test_persona_instructions_open_the_first_prompt_only() -> None:
    backend = GeminiBackend()
    persona = spec(instructions="Answer in haiku.")
    first = backend.argv(persona, "hello", None)[-1]
    assert first == (
        f"--prompt={INSTRUCTIONS_PREAMBLE}\n<instructions>\nAnswer in haiku.\n</instructions>"
        "\n\nhello"
    )
    assert backend.argv(persona, "again", "r1")[-1] == "--prompt=again"


def test_environment_keeps_gemini_in_one_process_so_signals_reach_it() -> None:
    assert GeminiBackend().environment(spec()) == {"GEMINI_CLI_NO_RELAUNCH": "true"}


def test_locate_honours_the_variable_and_version_reads_package_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "node_modules" / "@google" / "gemini-cli"
    (package / "bundle").mkdir(parents=True)
    (package / "package.json").write_text('{"name":"@google/gemini-cli","version":"0.61.0"}')
    script = package / "bundle" / "gemini.js"
    script.write_text("#!/usr/bin/env node\n")
    script.chmod(0o755)
    (tmp_path / "node_modules" / ".bin").mkdir()
    link = tmp_path / "node_modules" / ".bin" / "gemini"
    link.symlink_to(script)
    monkeypatch.setenv("AGENTPLEX_GEMINI_CLI", str(link))
    backend = GeminiBackend()
    found = backend.locate()
    assert (found.available, found.executable) == (True, str(link))
    assert backend.version(str(link)) == "0.61.0"


# --------------------------------------------------------------------------- real CLI


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    """The fake Gemini API; SLOW replies take 40 deltas 0.05 s apart (2 s)."""
    with FakeGemini(slow_delay=0.05) as server:
        yield server


@pytest.fixture
def gemini(backend_daemon: DaemonProcess) -> Iterator[Client]:
    with backend_daemon.client(timeout=30) as client:
        yield client


def start(
    client: Client, fake: FakeGemini, tmp_path: Path, prompt: str, **options: str
) -> p.SessionInfo:
    """Start a gemini session in its own project dir and HOME, pointed at ``fake``."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    env = gemini_env(tmp_path / "home", fake.url)
    return client.start("gemini", prompt, model=MODEL, cwd=project, env=env, **options)


def chunks_until(
    events: SyncSubscription, session_id: str, predicate: Callable[[p.Event], bool]
) -> list[p.Chunk]:
    """The session's chunks received up to the first event matching ``predicate``."""
    seen: list[p.Chunk] = []

    def match(event: p.Event) -> bool:
        if isinstance(event, p.Chunk) and event.session_id == session_id:
            seen.append(event)
        return predicate(event)

    next_event(events, match, TURN_TIMEOUT)
    return seen


def wait_for_process(session_id: str, name: str, timeout: float = TURN_TIMEOUT) -> None:
    """Wait until a process called ``name`` runs in the session (processes give no events)."""
    deadline = time.monotonic() + timeout
    while not any(_is_named(proc, name) for proc in descendants_with_marker(session_id)):
        assert time.monotonic() < deadline, f"no {name} process within {timeout} s"
        time.sleep(0.05)


def _is_named(proc: psutil.Process, name: str) -> bool:
    try:
        return proc.name() == name
    except psutil.NoSuchProcess:
        return False


def of_kind(chunks: list[p.Chunk], kind: ChunkKind) -> list[p.Chunk]:
    return [chunk for chunk in chunks if chunk.kind is kind]


def test_the_second_turn_resumes_the_first_gemini_session_and_persona_instructions_go_once(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "first question", persona="qa")
        first = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))
        first_id = gemini.inspect(info.id).cli_session_id
        gemini.send("second question", info.id)
        second = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE), TURN_TIMEOUT)

    inits = [c.cli_session_id for c in first + second if c.cli_session_id]
    assert len(inits) == 2 and first_id is not None
    assert set(inits) == {first_id} == {gemini.inspect(info.id).cli_session_id}
    assert first[-1].text.endswith("first question (turn 1)")
    assert second[-1].text == "Hello from fake Gemini! You said: second question (turn 2)"
    assert all(chunk.partial for chunk in of_kind(first, ChunkKind.TEXT))
    assert first[-1].usage is not None and first[-1].usage.input_tokens > 0

    opening, follow_up = fake.model_requests()
    persona_line = "You are the QA engineer on this task."
    assert persona_line in fake.visible_text(opening)
    history = fake.visible_text(follow_up)
    assert "first question" in history and "first question (turn 1)" in history
    assert history.endswith("user: second question")
    prompts = [m.text for m in fake.transcript(follow_up) if m.role == "user"]
    assert [persona_line in prompt for prompt in prompts] == [True, False]


def test_a_lock_an_earlier_gemini_left_behind_does_not_stall_the_next_turn(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "first question")
        next_event(events, became(info.id, p.SessionStatus.IDLE), TURN_TIMEOUT)
        # What a Gemini process leaves when it exits between making the lock directory and
        # recording it as held (2 of 10 fast turns against the fake did).
        orphan = tmp_path / "home" / REGISTRY_LOCK
        orphan.mkdir(exist_ok=True)
        sent = time.monotonic()
        gemini.send("second question", info.id)
        second = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))
        took = time.monotonic() - sent

    assert second[-1].text == "Hello from fake Gemini! You said: second question (turn 2)"
    assert not orphan.exists()
    assert took < ORPHAN_STALL, f"the resumed turn took {took:.1f} s: it waited on the lock"


def test_a_shell_tool_call_round_trip_is_seen_as_tool_use_then_tool_result(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    with gemini.subscribe(p.CHUNK_TOPIC) as events:
        info = start(gemini, fake, tmp_path, f"RUN_TOOL echo {marker}", permission_policy="allow")
        chunks = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))

    kinds = [chunk.kind for chunk in chunks]
    use = chunks[kinds.index(ChunkKind.TOOL_USE)]
    result = chunks[kinds.index(ChunkKind.TOOL_RESULT)]
    assert kinds.index(ChunkKind.TOOL_USE) < kinds.index(ChunkKind.TOOL_RESULT)
    assert use.tool_name == "run_shell_command"
    assert isinstance(use.tool_input, dict) and use.tool_input["command"] == f"echo {marker}"
    assert marker in result.text and not result.is_error
    assert chunks[-1].text == f"Tool said: {marker}"


def test_interrupt_mid_stream_leaves_the_session_idle_and_the_next_send_resumes_it(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "SLOW tell me everything")
        next_event(events, is_chunk(info.id, ChunkKind.TEXT), TURN_TIMEOUT)
        gemini.interrupt(info.id)
        stopped = chunks_until(events, info.id, became(info.id, p.SessionStatus.IDLE))
        first_id = gemini.inspect(info.id).cli_session_id
        fake.slow_delay = 0.0  # the merged follow-up prompt still says SLOW (see below)
        gemini.send("and now briefly", info.id)
        resumed = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))

    # Gemini exits 0 on SIGINT without a result line: the turn ends interrupted, not failed.
    assert not of_kind(stopped, ChunkKind.RESULT) and not of_kind(stopped, ChunkKind.ERROR)
    assert any("interrupted" in chunk.text for chunk in of_kind(stopped, ChunkKind.SYSTEM))
    assert first_id is not None
    assert [c.cli_session_id for c in resumed if c.cli_session_id] == [first_id]
    # The interrupted reply is not saved, so Gemini sends the two prompts as one user turn.
    history = fake.visible_text(fake.model_requests()[-1])
    assert "SLOW tell me everything" in history and "and now briefly" in history
    assert not resumed[-1].is_error


def test_the_cli_killed_mid_turn_gives_an_error_chunk_and_the_next_send_resumes_it(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    """SIGKILL while Gemini runs a tool in the second turn; the third turn resumes from the
    first, the last one that completed.

    The kill waits for the tool's process because Gemini saves the model's reply only once it
    has streamed: a prompt killed before then stays unanswered in the saved session and is
    merged into the next prompt, so the fake would obey its magic word (HANG, RUN_TOOL) again.
    """
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "remember apricot", permission_policy="allow")
        chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))
        first_id = gemini.inspect(info.id).cli_session_id
        gemini.send("RUN_TOOL sleep 30", info.id)
        next_event(events, is_chunk(info.id, ChunkKind.TOOL_USE), TURN_TIMEOUT)
        wait_for_process(info.id, "sleep")
        pid = gemini.inspect(info.id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = chunks_until(events, info.id, became(info.id, p.SessionStatus.IDLE))
        gemini.send("are you still there", info.id)
        resumed = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))

    [error] = of_kind(killed, ChunkKind.ERROR)
    assert error.stream is Stream.DAEMON and "SIGKILL" in error.text
    assert not resumed[-1].is_error and "are you still there" in resumed[-1].text
    assert first_id is not None
    assert [c.cli_session_id for c in resumed if c.cli_session_id] == [first_id]
    assert "remember apricot (turn 1)" in fake.visible_text(fake.model_requests()[-1])
    # The shell tool ran in its own session and outlived the CLI; terminate still finds it.
    gemini.terminate(info.id, grace=1)
    assert descendants_with_marker(info.id) == []


def test_an_api_error_ends_the_turn_with_an_error_result_and_the_session_idle(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "FAIL500 please")
        chunks = chunks_until(events, info.id, became(info.id, p.SessionStatus.IDLE))

    [result] = of_kind(chunks, ChunkKind.RESULT)
    assert result.is_error and "FAIL500" in result.text
    reported, exited = of_kind(chunks, ChunkKind.ERROR)
    assert reported.stream is Stream.STDOUT and "FAIL500" in reported.text
    assert exited.stream is Stream.DAEMON and "exit code 244" in exited.text
    assert gemini.inspect(info.id).status is p.SessionStatus.IDLE


def test_two_turns_count_each_token_the_fake_billed_once(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with gemini.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start(gemini, fake, tmp_path, "first question")
        first = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))[-1]
        next_event(events, became(info.id, p.SessionStatus.IDLE), TURN_TIMEOUT)
        after_first = fake.ledger.total()
        gemini.send("second question", info.id)
        second = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))[-1]
        next_event(events, became(info.id, p.SessionStatus.IDLE), TURN_TIMEOUT)

    billed = fake.ledger.total()
    assert len(fake.ledger.bills()) == 2
    assert first.usage is not None and second.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens) == (
        after_first.input_tokens,
        after_first.output_tokens,
    )
    assert (second.usage.input_tokens, second.usage.output_tokens) == (
        billed.input_tokens - after_first.input_tokens,
        billed.output_tokens - after_first.output_tokens,
    )
    totals = gemini.inspect(info.id).usage
    assert (totals.input_tokens, totals.output_tokens) == (
        billed.input_tokens,
        billed.output_tokens,
    )


def permissive_settings(home: Path) -> None:
    """What people put in their own settings: the shell allowed, every action approved."""
    path = home / ".gemini" / "settings.json"
    settings = json.loads(path.read_text())
    settings["tools"] = {"allowed": ["run_shell_command"]}
    settings["general"]["defaultApprovalMode"] = "yolo"
    path.write_text(json.dumps(settings))


@pytest.mark.parametrize("how", [{"permission_policy": "deny"}, {"persona": "pm"}])
def test_deny_holds_against_user_settings_that_allow_the_shell(
    gemini: Client, fake: FakeGemini, tmp_path: Path, how: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = gemini_env(tmp_path / "home", fake.url)
    permissive_settings(tmp_path / "home")
    with gemini.subscribe(p.CHUNK_TOPIC) as events:
        info = gemini.start(
            "gemini", "RUN_TOOL touch pwned", model=MODEL, cwd=project, env=env, **how
        )
        chunks = chunks_until(events, info.id, is_chunk(info.id, ChunkKind.RESULT))

    assert not (project / "pwned").exists()
    assert not of_kind(chunks, ChunkKind.TOOL_USE)
    # a denied tool is not even offered to the model; the allowed read tools are
    offered = fake.conversation(fake.model_requests()[0]).tools
    assert "run_shell_command" not in offered and "read_file" in offered


def test_ask_is_refused_at_start_naming_what_can_ask(
    gemini: Client, fake: FakeGemini, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="gemini --acp"):
        start(gemini, fake, tmp_path, "hi", permission_policy="ask")
    assert not fake.requests
