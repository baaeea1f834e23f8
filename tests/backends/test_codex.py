"""The codex backend: the real Codex CLI under the real daemon, against a fake Responses API.

Unit tests of the ``exec --json`` parser use lines the real CLI printed (tests/fakes/README.md
and shared/agent-clis.md); the acceptance tests start sessions through the daemon.
"""

from __future__ import annotations

import json
import os
import signal
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.clis import codex_env
from fakes.openai_responses import FakeOpenAIResponses
from fakes.server import RecordedRequest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import DaemonProcess, became, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.plugins.api import ChunkData, PermissionPolicy, SessionSpec
from agentplex.plugins.codex import CodexBackend, toml_string
from agentplex.plugins.codex_events import COMMAND_TOOL, CodexEventParser
from agentplex.protocol.errors import InvalidArgument

THREAD_ID = "01a1ff29-1bc3-7463-99f3-29417df882f7"
THREAD_STARTED = '{"type":"thread.started","thread_id":"01a1ff29-1bc3-7463-99f3-29417df882f7"}'
TURN_STARTED = '{"type":"turn.started"}'
AGENT_MESSAGE = (
    '{"type":"item.completed","item":{"id":"item_0","type":"agent_message",'
    '"text":"Hello from fake OpenAI! You said: say hello (turn 1)"}}'
)
TURN_COMPLETED = (
    '{"type":"turn.completed","usage":{"input_tokens":9527,"cached_input_tokens":120,'
    '"cache_write_input_tokens":0,"output_tokens":18,"reasoning_output_tokens":0}}'
)
COMMAND_STARTED = (
    '{"type":"item.started","item":{"id":"item_1","type":"command_execution",'
    '"command":"/bin/bash -lc \'echo smoke-tool-ok\'","aggregated_output":"",'
    '"exit_code":null,"status":"in_progress"}}'
)
COMMAND_COMPLETED = (
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution",'
    '"command":"/bin/bash -lc \'echo smoke-tool-ok\'","aggregated_output":"smoke-tool-ok\\n",'
    '"exit_code":0,"status":"completed"}}'
)
COMMAND_FAILED = (
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution",'
    '"command":"/bin/bash -lc \'ls /nonexistent-dir\'","aggregated_output":'
    "\"ls: cannot access '/nonexistent-dir': No such file or directory\\n\","
    '"exit_code":2,"status":"failed"}}'
)
HIGH_DEMAND = "We\u2019re currently experiencing high demand, which may cause temporary errors."
ERROR_EVENT = json.dumps({"type": "error", "message": HIGH_DEMAND}, ensure_ascii=False)
TURN_FAILED = json.dumps({"type": "turn.failed", "error": {"message": HIGH_DEMAND}})
METADATA_ERROR_ITEM = (
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata '
    "for `gpt-5.4` not found. Defaulting to fallback metadata; this can degrade performance "
    'and cause issues."}}'
)
VERBATIM_LINES = [
    THREAD_STARTED,
    TURN_STARTED,
    AGENT_MESSAGE,
    TURN_COMPLETED,
    COMMAND_STARTED,
    COMMAND_COMPLETED,
    COMMAND_FAILED,
    ERROR_EVENT,
    TURN_FAILED,
    METADATA_ERROR_ITEM,
]


def parse_all(*lines: str, stream: p.Stream = p.Stream.STDOUT) -> list[ChunkData]:
    """Every chunk one driver makes of ``lines``, in order."""
    driver = CodexEventParser()
    return [chunk for line in lines for chunk in driver.parse(line, stream)]


# --------------------------------------------------------------------------- parser


def test_thread_started_carries_the_thread_id_as_the_cli_session_id() -> None:
    [chunk] = parse_all(THREAD_STARTED)
    assert chunk.kind is p.ChunkKind.SYSTEM
    assert chunk.cli_session_id == THREAD_ID
    assert THREAD_ID in chunk.text


def test_the_thread_is_resumable_once_codex_reports_the_turn_started() -> None:
    driver = CodexEventParser()
    driver.parse(THREAD_STARTED, p.Stream.STDOUT)
    assert driver.resumable_id() is None  # killed now, Codex has no rollout to resume
    driver.parse(TURN_STARTED, p.Stream.STDOUT)
    assert driver.resumable_id() == THREAD_ID


def test_an_agent_message_is_whole_text_and_the_turn_result_repeats_it_with_usage() -> None:
    chunks = parse_all(THREAD_STARTED, TURN_STARTED, AGENT_MESSAGE, TURN_COMPLETED)
    assert [c.kind for c in chunks] == [
        p.ChunkKind.SYSTEM,
        p.ChunkKind.SYSTEM,
        p.ChunkKind.TEXT,
        p.ChunkKind.RESULT,
    ]
    text, result = chunks[2], chunks[3]
    assert text.text == "Hello from fake OpenAI! You said: say hello (turn 1)"
    assert not text.partial
    assert result.text == text.text and not result.is_error
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (9527, 18)
    assert result.usage.cached_tokens == 120
    assert result.usage.cost_usd == 0.0
    assert result.usage.duration_ms is not None and result.usage.duration_ms >= 0


def test_a_command_execution_is_a_tool_use_then_its_tool_result() -> None:
    use, result = parse_all(COMMAND_STARTED, COMMAND_COMPLETED)
    assert use.kind is p.ChunkKind.TOOL_USE
    assert use.tool_name == COMMAND_TOOL
    assert use.tool_input == {"command": "/bin/bash -lc 'echo smoke-tool-ok'"}
    assert "echo smoke-tool-ok" in use.text
    assert result.kind is p.ChunkKind.TOOL_RESULT
    assert result.text == "smoke-tool-ok\n"
    assert not result.is_error


def test_a_failed_command_is_an_error_result_and_gets_a_tool_use_even_unannounced() -> None:
    use, result = parse_all(COMMAND_FAILED)
    assert use.kind is p.ChunkKind.TOOL_USE
    assert use.tool_input == {"command": "/bin/bash -lc 'ls /nonexistent-dir'"}
    assert result.kind is p.ChunkKind.TOOL_RESULT
    assert result.is_error
    assert "No such file or directory" in result.text


def test_turn_failed_after_the_same_error_is_one_error_and_an_error_result() -> None:
    error, result = parse_all(ERROR_EVENT, TURN_FAILED)
    assert error.kind is p.ChunkKind.ERROR and error.is_error
    assert error.text == HIGH_DEMAND
    assert result.kind is p.ChunkKind.RESULT and result.is_error
    assert result.text == HIGH_DEMAND


def test_turn_failed_alone_is_an_error_and_an_error_result() -> None:
    assert [c.kind for c in parse_all(TURN_FAILED)] == [p.ChunkKind.ERROR, p.ChunkKind.RESULT]


def test_a_non_fatal_error_item_is_an_error_chunk() -> None:
    [chunk] = parse_all(METADATA_ERROR_ITEM)
    assert chunk.kind is p.ChunkKind.ERROR
    assert "Model metadata" in chunk.text


@pytest.mark.parametrize(
    ("line", "kind", "text"),
    [
        (
            '{"type":"item.completed","item":{"id":"r","type":"reasoning","text":"hmm"}}',
            p.ChunkKind.THINKING,
            "hmm",
        ),
        ('{"type":"item.plan.delta","item_id":"p","delta":"step"}', p.ChunkKind.TEXT, "step"),
        (
            '{"type":"item.updated","item":{"id":"t","type":"todo_list","items":'
            '[{"text":"write","completed":true},{"text":"test","completed":false}]}}',
            p.ChunkKind.SYSTEM,
            "[x] write\n[ ] test",
        ),
        (
            '{"type":"request_user_input","id":"t","call_id":"c","questions":'
            '[{"id":"q","header":"h","question":"Which one?"}]}',
            p.ChunkKind.SYSTEM,
            "Which one?",
        ),
        ('{"type":"thread.renamed","name":"x"}', p.ChunkKind.SYSTEM, "thread.renamed"),
        (
            '{"type":"item.completed","item":{"id":"n","type":"hologram"}}',
            p.ChunkKind.SYSTEM,
            "hologram",
        ),
        ("not json at all", p.ChunkKind.RAW, "not json at all"),
        ('["a list"]', p.ChunkKind.RAW, '["a list"]'),
        ('{"type":"turn.completed","usage":"lots"}', p.ChunkKind.RAW, "lots"),
    ],
)
def test_other_events_become_the_chunk_that_fits(line: str, kind: p.ChunkKind, text: str) -> None:
    [chunk] = parse_all(line)
    assert chunk.kind is kind
    assert text in chunk.text


def test_started_agent_messages_wait_for_their_whole_text() -> None:
    line = '{"type":"item.started","item":{"id":"m","type":"agent_message","text":""}}'
    assert parse_all(line) == []


def test_a_file_change_reported_only_when_done_is_a_tool_use_and_a_result() -> None:
    line = (
        '{"type":"item.completed","item":{"id":"f","type":"file_change","changes":'
        '[{"path":"src/a.py","kind":"update"},{"path":"b.txt","kind":"add"}],"status":"failed"}}'
    )
    use, result = parse_all(line)
    assert use.kind is p.ChunkKind.TOOL_USE and use.tool_name == "file_change"
    assert use.text == "file_change: update src/a.py, add b.txt"
    assert result.kind is p.ChunkKind.TOOL_RESULT and result.is_error
    assert result.text == "update src/a.py\nadd b.txt"


def test_an_mcp_call_shows_its_server_tool_arguments_and_text_result() -> None:
    started = (
        '{"type":"item.started","item":{"id":"m","type":"mcp_tool_call","server":"docs",'
        '"tool":"search","arguments":{"query":"msgspec"},"result":null,"error":null,'
        '"status":"in_progress"}}'
    )
    completed = started.replace(
        '"result":null',
        '"result":{"content":[{"type":"text","text":"found it"}],"structured_content":null}',
    ).replace("item.started", "item.completed")
    use, result = parse_all(started, completed)
    assert (use.tool_name, use.tool_input) == ("docs/search", {"query": "msgspec"})
    assert result.kind is p.ChunkKind.TOOL_RESULT and result.text == "found it"


def test_stderr_lines_are_raw() -> None:
    [chunk] = parse_all("Reading additional input from stdin...", stream=p.Stream.STDERR)
    assert chunk.kind is p.ChunkKind.RAW
    assert chunk.text == "Reading additional input from stdin..."


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_event_types = st.sampled_from(
    [
        "thread.started",
        "turn.started",
        "turn.completed",
        "turn.failed",
        "item.started",
        "item.updated",
        "item.completed",
        "item.plan.delta",
        "request_user_input",
        "error",
        "other",
    ]
)
_item_types = st.sampled_from(
    [
        "agent_message",
        "reasoning",
        "plan",
        "command_execution",
        "file_change",
        "mcp_tool_call",
        "collab_tool_call",
        "web_search",
        "todo_list",
        "error",
        "other",
    ]
)
_item_fields = st.sampled_from(
    [
        "id",
        "text",
        "message",
        "command",
        "aggregated_output",
        "exit_code",
        "status",
        "changes",
        "server",
        "tool",
        "arguments",
        "result",
        "error",
        "query",
        "action",
        "prompt",
        "receiver_thread_ids",
        "agents_states",
        "items",
    ]
)
_items = st.builds(
    lambda kind, extra: {**extra, "type": kind},
    _item_types,
    st.dictionaries(_item_fields | st.text(max_size=10), _json_values, max_size=6),
)
_events = st.fixed_dictionaries(
    {"type": _event_types},
    optional={
        "item": _items,
        "thread_id": _json_values,
        "usage": _json_values,
        "error": _json_values,
        "message": _json_values,
        "questions": _json_values,
        "delta": _json_values,
    },
)
_lines = (
    st.text()
    | _json_values.map(json.dumps)
    | _events.map(json.dumps)
    | st.sampled_from(VERBATIM_LINES).flatmap(
        lambda line: st.integers(0, len(line)).map(lambda cut: line[:cut])
    )
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_lines, max_size=6), st.sampled_from(list(p.Stream)))
def test_parse_never_raises(lines: list[str], stream: p.Stream) -> None:
    driver = CodexEventParser()
    for line in lines:
        chunks = driver.parse(line, stream)
        assert all(isinstance(chunk, ChunkData) for chunk in chunks)


@settings(max_examples=100, deadline=None)
@given(st.text() | _json_values.map(json.dumps))
def test_a_line_that_is_not_a_json_object_is_kept_as_one_raw_chunk(line: str) -> None:
    try:
        is_object = isinstance(json.loads(line), dict)
    except ValueError:
        is_object = False
    assume(not is_object)
    assert parse_all(line) == [ChunkData(p.ChunkKind.RAW, line)]


def test_parse_survives_deeply_nested_json() -> None:
    deep = '{"type":"item.completed","item":{"type":"mcp_tool_call","arguments":' + (
        "[" * 100_000 + "]" * 100_000 + "}}"
    )
    assert parse_all(deep)


# --------------------------------------------------------------------------- argv


def spec(tmp_path: Path, **fields: Any) -> SessionSpec:
    """A session spec in ``tmp_path`` with ``fields`` set."""
    return SessionSpec(session_id="s", cwd=tmp_path, **fields)


def test_a_first_turn_runs_exec_json_with_the_message_after_a_double_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPLEX_CODEX_CLI", "/bin/true")
    argv = CodexBackend().argv(
        spec(tmp_path, permission_policy=PermissionPolicy.DENY), "--help me", None
    )
    assert argv == [
        "/bin/true",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-s",
        "read-only",
        "-c",
        'approval_policy="never"',
        "--",
        "--help me",
    ]


def test_a_later_turn_resumes_the_thread_with_the_options_before_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPLEX_CODEX_CLI", "/bin/true")
    session = spec(
        tmp_path,
        model="gpt-5.4",
        instructions='Be "terse".\nAlways.',
        permission_policy=PermissionPolicy.ALLOW,
    )
    argv = CodexBackend().argv(session, "again", THREAD_ID)
    assert argv == [
        "/bin/true",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-m",
        "gpt-5.4",
        "-c",
        'developer_instructions="Be \\"terse\\".\\nAlways."',
        "-s",
        "workspace-write",
        "-c",
        'approval_policy="never"',
        "resume",
        THREAD_ID,
        "--",
        "again",
    ]


@pytest.mark.parametrize("policy", [PermissionPolicy.ASK, PermissionPolicy.DENY])
def test_policies_other_than_allow_pin_the_read_only_sandbox_and_never_escalate(
    tmp_path: Path, policy: PermissionPolicy
) -> None:
    # ask too: a session recorded with ask before it was refused must not get more
    argv = CodexBackend().argv(spec(tmp_path, permission_policy=policy), "hi", None)
    options = argv[argv.index("--skip-git-repo-check") + 1 : argv.index("--")]
    assert options == ["-s", "read-only", "-c", 'approval_policy="never"']
    assert "--dangerously-bypass-approvals-and-sandbox" not in argv


def test_ask_is_refused_naming_the_policies_codex_can_hold(tmp_path: Path) -> None:
    backend = CodexBackend()
    with pytest.raises(InvalidArgument, match=r"--policy deny .*--policy allow"):
        backend.check_policy(spec(tmp_path, permission_policy=PermissionPolicy.ASK))
    for policy in (PermissionPolicy.DENY, PermissionPolicy.ALLOW):
        backend.check_policy(spec(tmp_path, permission_policy=policy))
    assert backend.default_policy is PermissionPolicy.DENY
    assert set(backend.policies) == set(PermissionPolicy)


def test_the_turn_usage_is_tagged_as_the_thread_running_total() -> None:
    [result] = parse_all(TURN_COMPLETED)
    assert result.usage is not None and result.usage.scope is p.UsageScope.THREAD


@settings(max_examples=300)
@given(st.text())
def test_instructions_survive_toml_quoting(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}")["value"] == text


def test_the_version_comes_from_the_npm_package_next_to_the_native_binary(
    tmp_path: Path,
) -> None:
    modules = tmp_path / "node_modules"
    (modules / "@openai" / "codex").mkdir(parents=True)
    (modules / "@openai" / "codex" / "package.json").write_text('{"version": "0.169.0"}')
    binary = modules / "@openai" / "codex-linux-x64" / "vendor" / "x86_64" / "bin" / "codex"
    binary.parent.mkdir(parents=True)
    binary.touch()
    assert CodexBackend().version(str(binary)) == "0.169.0"


def test_the_backend_passes_codex_credentials_and_home_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon passes what the backend declares (see tests/backends/test_credentials.py).
    assert {"CODEX_HOME", "CODEX_API_KEY", "OPENAI_API_KEY"} <= set(CodexBackend.credentials)
    assert CodexBackend().environment(spec(tmp_path)) == {}


# --------------------------------------------------------------------------- real CLI


@pytest.fixture
def fake() -> Iterator[FakeOpenAIResponses]:
    with FakeOpenAIResponses() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def cli_env(tmp_path: Path, fake: FakeOpenAIResponses) -> dict[str, str]:
    """The session env that points Codex at the fake (retries off, isolated CODEX_HOME)."""
    return codex_env(tmp_path / "home", fake.url)


@pytest.fixture
def client(backend_daemon: DaemonProcess) -> Iterator[Client]:
    with backend_daemon.client() as c:
        yield c


def test_a_second_turn_resumes_the_same_codex_thread(
    client: Client, fake: FakeOpenAIResponses, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", "first question", cwd=project, env=cli_env)
        started = next_event(events, is_chunk(info.id, p.ChunkKind.SYSTEM, "thread started"))
        first = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        thread_id = client.inspect(info.id).cli_session_id
        client.send("second question", info.id)
        second = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    assert isinstance(started, p.Chunk) and started.cli_session_id == thread_id
    assert fake.model_requests()[0].header("thread-id") == thread_id
    assert isinstance(first, p.Chunk) and "(turn 1)" in first.text
    assert isinstance(second, p.Chunk) and "(turn 2)" in second.text
    assert second.usage is not None and second.usage.input_tokens > 0
    assert fake.visible_text(fake.model_requests()[-1]).splitlines() == [
        "user: first question",
        f"assistant: {first.text}",
        "user: second question",
    ]
    final = client.inspect(info.id)
    assert final.cli_session_id == thread_id
    assert final.turns == 2


def test_a_shell_command_is_seen_as_tool_use_then_tool_result(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    marker = "codex-tool-marker-7f3a"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("codex", f"RUN_TOOL echo {marker}", cwd=project, env=cli_env)
        use = next_event(events, is_chunk(info.id, p.ChunkKind.TOOL_USE))
        result = next_event(events, is_chunk(info.id, p.ChunkKind.TOOL_RESULT))
        final = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert isinstance(use, p.Chunk) and use.tool_name == COMMAND_TOOL
    assert marker in use.tool_input["command"]
    assert isinstance(result, p.Chunk) and marker in result.text and not result.is_error
    assert isinstance(final, p.Chunk) and final.text == f"Tool said: {marker}"


def test_an_interrupted_turn_leaves_the_session_idle_and_a_send_works(
    client: Client, fake: FakeOpenAIResponses, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", PROMPTS["interrupt"], cwd=project, env=cli_env)
        note = stop_mid_turn(client, fake, events, info.id, "interrupt")
        client.send("and now briefly", info.id)
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert note.kind is p.ChunkKind.SYSTEM and note.stream is p.Stream.DAEMON
    assert "interrupted" in note.text
    assert isinstance(result, p.Chunk) and not result.is_error
    assert "You said: and now briefly" in result.text


def test_a_killed_turn_reports_an_error_and_the_next_send_works(
    client: Client, fake: FakeOpenAIResponses, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", PROMPTS["kill"], cwd=project, env=cli_env)
        error = stop_mid_turn(client, fake, events, info.id, "kill")
        client.send("are you back?", info.id)
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert error.kind is p.ChunkKind.ERROR and "SIGKILL" in error.text
    assert isinstance(result, p.Chunk) and not result.is_error
    assert "You said: are you back?" in result.text


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_a_send_after_a_stopped_turn_continues_the_same_codex_thread(
    client: Client,
    fake: FakeOpenAIResponses,
    project: Path,
    cli_env: dict[str, str],
    how: str,
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", PROMPTS[how], cwd=project, env=cli_env)
        next_event(events, is_chunk(info.id, p.ChunkKind.SYSTEM, "turn started"))
        thread_id = client.inspect(info.id).cli_session_id
        stop_mid_turn(client, fake, events, info.id, how)
        client.send("and now?", info.id)
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert isinstance(result, p.Chunk) and "(turn 2)" in result.text
    assert fake.visible_text(fake.model_requests()[-1]).splitlines() == [
        f"user: {PROMPTS[how]}",
        "user: and now?",
    ]
    assert client.inspect(info.id).cli_session_id == thread_id


def test_a_model_error_ends_the_turn_with_an_error_result(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", "FAIL500 please", cwd=project, env=cli_env)
        error = next_event(events, is_chunk(info.id, p.ChunkKind.ERROR))
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    assert isinstance(error, p.Chunk) and error.stream is p.Stream.STDOUT
    assert isinstance(result, p.Chunk) and result.is_error and result.text == error.text


def test_the_persona_instructions_and_the_model_reach_codex(
    client: Client, fake: FakeOpenAIResponses, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "codex", "who are you?", persona="qa", model="gpt-5.4", cwd=project, env=cli_env
        )
        next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    body = fake.model_requests()[-1].body
    assert isinstance(body, dict)
    assert body["model"] == "gpt-5.4"
    developer = [item for item in body["input"] if item.get("role") == "developer"]
    texts = [part["text"] for item in developer for part in item["content"]]
    assert any(text.startswith("You are the QA engineer on this task.") for text in texts)


def test_two_turns_count_each_token_the_fake_billed_once(
    client: Client, fake: FakeOpenAIResponses, project: Path, cli_env: dict[str, str]
) -> None:
    # Codex's resumed turn reports the thread's running total; summed as it is, the second
    # turn's first request would be counted twice.
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("codex", "first question", cwd=project, env=cli_env)
        first = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        after_first = fake.ledger.total()
        client.send("RUN_TOOL echo two-requests", info.id)
        second = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    billed = fake.ledger.total()
    assert len(fake.ledger.bills()) == 3  # one request, then a tool call and its answer
    assert isinstance(first, p.Chunk) and first.usage is not None
    assert isinstance(second, p.Chunk) and second.usage is not None
    # each result carries its own turn's figures
    assert (first.usage.input_tokens, first.usage.output_tokens) == (
        after_first.input_tokens,
        after_first.output_tokens,
    )
    assert (second.usage.input_tokens, second.usage.output_tokens) == (
        billed.input_tokens - after_first.input_tokens,
        billed.output_tokens - after_first.output_tokens,
    )
    totals = client.inspect(info.id).usage
    assert (totals.input_tokens, totals.output_tokens) == (
        billed.input_tokens,
        billed.output_tokens,
    )


PERMISSIVE_CONFIG = 'sandbox_mode = "danger-full-access"\napproval_policy = "never"\n'
"""What many people put in their own ``config.toml``: no sandbox, never ask."""


def test_deny_holds_against_a_user_config_without_sandbox(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    config = Path(cli_env["CODEX_HOME"]) / "config.toml"
    config.write_text(PERMISSIVE_CONFIG + config.read_text())
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "codex", "RUN_TOOL touch pwned", permission_policy="deny", cwd=project, env=cli_env
        )
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert isinstance(result, p.Chunk) and "Read-only file system" in result.text
    assert not (project / "pwned").exists()


def test_allow_lets_the_same_command_write_in_the_project(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "codex", "RUN_TOOL touch made", permission_policy="allow", cwd=project, env=cli_env
        )
        next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))

    assert (project / "made").exists()


def test_ask_is_refused_at_start_and_no_policy_means_deny(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    with pytest.raises(InvalidArgument, match="codex exec has no one to ask"):
        client.start("codex", "hi", permission_policy="ask", cwd=project, env=cli_env)
    # the QA persona asks: on Codex it falls back to deny rather than failing the start
    config = Path(cli_env["CODEX_HOME"]) / "config.toml"
    config.write_text(PERMISSIVE_CONFIG + config.read_text())
    with client.subscribe(p.CHUNK_TOPIC) as events:
        for persona in (None, "qa"):
            info = client.start(
                "codex", "RUN_TOOL touch pwned", persona=persona, cwd=project, env=cli_env
            )
            next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
    assert not (project / "pwned").exists()


# --------------------------------------------------------------------------- helpers


PROMPTS = {"interrupt": "SLOW tell me everything", "kill": "HANG until killed"}
"""A first prompt that keeps the fake busy, by how the test stops the turn."""


def stop_mid_turn(
    client: Client,
    fake: FakeOpenAIResponses,
    events: SyncSubscription,
    session_id: str,
    how: str,
) -> p.Chunk:
    """Once the fake holds the turn's request, interrupt the turn or SIGKILL the CLI; wait
    until the session is idle again and return the daemon's chunk about the stopped turn."""
    word = PROMPTS[how].split()[0]
    fake.wait_for_requests(lambda requests: any(_asks(r, word) for r in requests), 20)
    if how == "interrupt":
        client.interrupt(session_id)
    else:
        pid = client.inspect(session_id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    note = next_event(events, from_daemon(session_id))
    next_event(events, became(session_id, p.SessionStatus.IDLE))
    assert isinstance(note, p.Chunk)
    return note


def from_daemon(session_id: str) -> Callable[[p.Event], bool]:
    """A predicate for ``next_event``: a chunk the daemon itself said about this session."""

    def match(event: p.Event) -> bool:
        return (
            isinstance(event, p.Chunk)
            and event.session_id == session_id
            and (event.stream is p.Stream.DAEMON)
        )

    return match


def _asks(request: RecordedRequest, word: str) -> bool:
    """Whether a recorded request's body holds ``word`` (a magic word in its prompt)."""
    return word in json.dumps(request.body)
