"""The ``claude`` backend: its command lines, its control-protocol driver, and the real
Claude Code CLI run by the real daemon against the fake Anthropic API.

Unit tests parse verbatim lines of Claude Code 2.1.197 (shared/agent-clis.md, tests/fakes/
README.md and this backend's own runs against the fake). Integration tests start sessions
through the daemon with the fake's environment and wait on events, never on sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import string
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeAnthropic, claude_env
from fakes.anthropic_api import price_usd
from fakes.billing import Bill
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DaemonProcess, became, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.plugins import claude as claude_module
from agentplex.plugins.api import BackendMode, ChunkData, PermissionPolicy, SessionSpec
from agentplex.plugins.claude import ClaudeBackend
from agentplex.plugins.claude_driver import DENIED_BY_POLICY, DENIED_BY_USER, ClaudeDriver
from agentplex.plugins.stream_json import ClaudeStreamParser
from agentplex.protocol.errors import InvalidArgument, NothingToAnswer

REPO = Path(__file__).resolve().parents[2]
SID = "59e9194b-823f-44b3-a954-16e7f27175b8"

CAN_USE_TOOL = (
    '{"type":"control_request","request_id":"7f27f7e6-21ed-4c26-a641-cc289b6074eb",'
    '"request":{"subtype":"can_use_tool","tool_name":"Bash","display_name":"Bash",'
    '"input":{"command":"touch y.txt","description":"Run a command"},'
    '"description":"Run a command","permission_suggestions":[{"type":"addRules",'
    '"rules":[{"toolName":"Bash","ruleContent":"touch y.txt"}],"behavior":"allow",'
    '"destination":"localSettings"},{"type":"addDirectories",'
    '"directories":["/tmp/cx-8bg83zev/proj"],"destination":"session"},{"type":"setMode",'
    '"mode":"acceptEdits","destination":"session"}],'
    '"blocked_path":"/tmp/cx-8bg83zev/proj/y.txt",'
    '"tool_use_id":"toolu_fake_1cbe16a16f5545d99baa3a1d"}}'
)
REQUEST_ID = "7f27f7e6-21ed-4c26-a641-cc289b6074eb"
TOOL_INPUT = {"command": "touch y.txt", "description": "Run a command"}
CANCEL = '{"type":"control_cancel_request","request_id":"7f27f7e6-21ed-4c26-a641-cc289b6074eb"}'
INTERRUPT_ANSWER = (
    '{"type":"control_response","response":{"subtype":"success","request_id":"ctl-9"}}'
)
INTERRUPTED_FOR_TOOL = (
    '{"type":"user","message":{"role":"user","content":[{"type":"text",'
    '"text":"[Request interrupted by user for tool use]"}]},"parent_tool_use_id":null,'
    '"session_id":"59e9194b-823f-44b3-a954-16e7f27175b8",'
    '"uuid":"f5f295c3-09f4-4f96-9304-41d377524309","timestamp":"2026-11-21T17:43:23.380Z"}'
)
DENIED_RESULT = (
    '{"type":"user","message":{"role":"user","content":[{"type":"tool_result",'
    '"content":"denied by agentplex","is_error":true,'
    '"tool_use_id":"toolu_fake_4a6cb67f505b4fe3a51cb2ed"}]},"parent_tool_use_id":null,'
    '"session_id":"a375fbdb-e024-49ba-9130-ccbbf305f468",'
    '"uuid":"9cb705e7-99c0-461c-99e0-94ec7b1f1528","timestamp":"2026-11-21T17:41:57.255Z"}'
)
TEXT_DELTA = (
    '{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"Too"}},'
    '"session_id":"dc8979aa-a412-4857-a2b6-c8d9121d54b6","parent_tool_use_id":null,'
    '"uuid":"006e7722-f1d7-4884-94bd-309e8934c937"}'
)


def spec(**fields: Any) -> SessionSpec:
    return SessionSpec(session_id="s-1", cwd=Path("/work"), **fields)


# --------------------------------------------------------------------------- the backend


def test_the_backend_declares_both_modes_and_every_capability() -> None:
    backend = ClaudeBackend()
    assert backend.id == "claude"
    assert backend.modes == (BackendMode.TURN, BackendMode.LONG_LIVED)
    caps = backend.capabilities
    assert caps.resume and caps.streamed_deltas and caps.long_lived
    assert caps.tool_events and caps.cost and caps.permission_requests


def test_locate_honours_the_configured_cli(
    monkeypatch: pytest.MonkeyPatch, agent_clis: dict[str, Path]
) -> None:
    monkeypatch.setenv("AGENTPLEX_CLAUDE_CLI", str(agent_clis["claude"]))
    found = ClaudeBackend().locate()
    assert found.available and found.executable == str(agent_clis["claude"])


def test_version_is_read_from_the_pinned_npm_package(agent_clis: dict[str, Path]) -> None:
    manifest = json.loads((REPO / "tests" / "agent_clis" / "package.json").read_text())
    pinned = manifest["dependencies"]["@anthropic-ai/claude-code"]
    assert ClaudeBackend().version(str(agent_clis["claude"])) == pinned.lstrip("^~=")


def test_a_turn_runs_claude_print_with_streamed_json_and_the_message_after_dashdash() -> None:
    argv = ClaudeBackend().argv(spec(), "-x looks like a flag", None)
    assert argv[1:] == [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--",
        "-x looks like a flag",
    ]


def test_a_later_turn_resumes_and_the_persona_reaches_its_flags() -> None:
    persona = spec(
        instructions="Be terse.", model="claude-sonnet-4-5", allowed_tools=("Read", "Bash")
    )
    argv = ClaudeBackend().argv(persona, "go on", "sess-1")
    flags = argv[argv.index("--include-partial-messages") + 1 :]
    assert flags == [
        "--resume",
        "sess-1",
        "--append-system-prompt",
        "Be terse.",
        "--model",
        "claude-sonnet-4-5",
        "--allowedTools",
        "Read,Bash",
        "--",
        "go on",
    ]


def test_policy_allow_in_turn_mode_skips_permissions_with_is_sandbox_as_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, allow = ClaudeBackend(), spec(permission_policy=PermissionPolicy.ALLOW)
    assert "--dangerously-skip-permissions" in backend.argv(allow, "hi", None)
    monkeypatch.setattr(claude_module.os, "geteuid", lambda: 0)
    assert backend.environment(allow) == {"IS_SANDBOX": "1"}
    monkeypatch.setattr(claude_module.os, "geteuid", lambda: 1000)
    assert backend.environment(allow) == {}


def test_policy_deny_makes_claude_refuse_unasked_and_allowed_tools_the_only_tools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claude_module.os, "geteuid", lambda: 0)
    backend = ClaudeBackend()
    pm = spec(
        permission_policy=PermissionPolicy.DENY,
        allowed_tools=("Read", "Bash(git log *)", "mcp__docs__search", "Bash(git diff)"),
    )
    argv = backend.argv(pm, "hi", None)
    assert argv[argv.index("--allowedTools") :] == [
        "--allowedTools",
        "Read,Bash(git log *),mcp__docs__search,Bash(git diff)",
        "--permission-mode",
        "dontAsk",
        "--tools",
        "Read,Bash",
        "--",
        "hi",
    ]
    bare = backend.argv(spec(permission_policy=PermissionPolicy.DENY), "hi", None)
    assert bare[-4:] == ["--permission-mode", "dontAsk", "--", "hi"]
    assert backend.environment(pm) == {}
    assert type(backend.driver(pm)) is ClaudeStreamParser


def test_ask_in_turn_mode_is_refused_naming_long_lived_mode_and_falls_back_to_deny() -> None:
    backend = ClaudeBackend()
    with pytest.raises(InvalidArgument, match="--mode long_lived"):
        backend.check_policy(spec(permission_policy=PermissionPolicy.ASK))
    for policy in (PermissionPolicy.ALLOW, PermissionPolicy.DENY):
        backend.check_policy(spec(permission_policy=policy))
    backend.check_policy(spec(permission_policy=PermissionPolicy.ASK, mode=BackendMode.LONG_LIVED))
    assert backend.default_policy is PermissionPolicy.DENY
    assert set(backend.policies) == set(PermissionPolicy)


@pytest.mark.parametrize("policy", list(PermissionPolicy))
def test_long_lived_mode_reads_stream_json_and_asks_permission_on_stdio(
    policy: PermissionPolicy,
) -> None:
    long_lived = spec(mode=BackendMode.LONG_LIVED, permission_policy=policy, model="opus")
    backend = ClaudeBackend()
    held = ["--permission-mode", "dontAsk"] if policy is PermissionPolicy.DENY else []
    assert backend.argv(long_lived, None, None)[1:] == [
        "-p",
        "--input-format",
        "stream-json",
        "--permission-prompt-tool",
        "stdio",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--model",
        "opus",
        *held,
    ]
    assert backend.environment(long_lived) == {}
    driver = backend.driver(long_lived)
    assert isinstance(driver, ClaudeDriver) and driver.policy is policy


# --------------------------------------------------------------------------- the driver


def test_a_message_is_one_stream_json_user_line() -> None:
    line = ClaudeDriver(PermissionPolicy.ASK).encode_input('say "hi"\nplease')
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "type": "user",
        "message": {"role": "user", "content": 'say "hi"\nplease'},
    }


def test_under_ask_a_tool_request_is_a_permission_request_carrying_its_id() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    [chunk] = driver.parse(CAN_USE_TOOL, p.Stream.STDOUT)
    assert chunk == ChunkData(
        p.ChunkKind.PERMISSION_REQUEST,
        "permission: Bash: touch y.txt",
        tool_name="Bash",
        tool_input=TOOL_INPUT,
        request_id=REQUEST_ID,
    )
    assert driver.take_outgoing() == b""


def test_allowing_echoes_the_tool_input_as_updated_input() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    driver.parse(CAN_USE_TOOL, p.Stream.STDOUT)
    answer = driver.answer_permission(REQUEST_ID, True)
    assert answer.endswith(b"\n")
    assert json.loads(answer) == {
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": REQUEST_ID,
            "response": {"behavior": "allow", "updatedInput": TOOL_INPUT},
        },
    }


def test_denying_sends_a_message_and_a_request_is_answered_only_once() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    driver.parse(CAN_USE_TOOL, p.Stream.STDOUT)
    answer = json.loads(driver.answer_permission(REQUEST_ID, False))
    assert answer["response"]["response"] == {"behavior": "deny", "message": DENIED_BY_USER}
    with pytest.raises(NothingToAnswer):
        driver.answer_permission(REQUEST_ID, True)


def test_an_unknown_request_cannot_be_answered() -> None:
    with pytest.raises(NothingToAnswer):
        ClaudeDriver(PermissionPolicy.ASK).answer_permission("nope", True)


def test_a_cancelled_request_is_forgotten() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    driver.parse(CAN_USE_TOOL, p.Stream.STDOUT)
    assert driver.parse(CANCEL, p.Stream.STDOUT) == [
        ChunkData(p.ChunkKind.SYSTEM, f"control_cancel_request: {REQUEST_ID}")
    ]
    with pytest.raises(NothingToAnswer):
        driver.answer_permission(REQUEST_ID, True)


@pytest.mark.parametrize(
    ("policy", "verdict", "note"),
    [
        (PermissionPolicy.ALLOW, {"behavior": "allow", "updatedInput": TOOL_INPUT}, "allowed"),
        (PermissionPolicy.DENY, {"behavior": "deny", "message": DENIED_BY_POLICY}, "denied"),
    ],
)
def test_under_allow_or_deny_the_driver_answers_at_once(
    policy: PermissionPolicy, verdict: dict[str, object], note: str
) -> None:
    driver = ClaudeDriver(policy)
    [chunk] = driver.parse(CAN_USE_TOOL, p.Stream.STDOUT)
    assert chunk.kind is p.ChunkKind.PERMISSION_REQUEST
    assert chunk.request_id is None, "nobody is to answer it"
    assert chunk.text == f"permission: Bash: touch y.txt ({note} by policy)"
    answer = json.loads(driver.take_outgoing())
    assert answer["response"]["request_id"] == REQUEST_ID
    assert answer["response"]["response"] == verdict
    assert driver.take_outgoing() == b""


def test_interrupt_is_an_in_band_control_request_with_a_fresh_id() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    first, second = json.loads(driver.interrupt()), json.loads(driver.interrupt())
    assert first["type"] == "control_request"
    assert first["request"] == {"subtype": "interrupt"}
    assert first["request_id"] != second["request_id"]


def test_control_answers_and_interrupt_markers_are_system_chunks() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    assert driver.parse(INTERRUPT_ANSWER, p.Stream.STDOUT) == [
        ChunkData(p.ChunkKind.SYSTEM, "control_response: success ctl-9")
    ]
    assert driver.parse(INTERRUPTED_FOR_TOOL, p.Stream.STDOUT) == [
        ChunkData(
            p.ChunkKind.SYSTEM, "[Request interrupted by user for tool use]", cli_session_id=SID
        )
    ]


def test_a_denied_tool_is_an_error_tool_result_and_deltas_are_partial() -> None:
    driver = ClaudeDriver(PermissionPolicy.DENY)
    [denied] = driver.parse(DENIED_RESULT, p.Stream.STDOUT)
    assert denied.kind is p.ChunkKind.TOOL_RESULT and denied.is_error
    assert denied.text == "denied by agentplex"
    [delta] = driver.parse(TEXT_DELTA, p.Stream.STDOUT)
    assert delta.kind is p.ChunkKind.TEXT and delta.partial and delta.text == "Too"


def test_lines_that_are_not_json_and_stderr_lines_are_raw() -> None:
    driver = ClaudeDriver(PermissionPolicy.ASK)
    assert driver.parse("Error: boom", p.Stream.STDOUT) == [
        ChunkData(p.ChunkKind.RAW, "Error: boom")
    ]
    assert driver.parse(CAN_USE_TOOL, p.Stream.STDERR) == [ChunkData(p.ChunkKind.RAW, CAN_USE_TOOL)]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_CONTROL = st.fixed_dictionaries(
    {"type": st.sampled_from(["control_request", "control_response", "control_cancel_request"])},
    optional={
        "request_id": st.text(max_size=8) | _JSON,
        "session_id": st.text(max_size=8) | _JSON,
        "request": st.fixed_dictionaries(
            {"subtype": st.sampled_from(["can_use_tool", "interrupt", "x"]) | _JSON},
            optional={"tool_name": st.text(max_size=8) | _JSON, "input": _JSON},
        )
        | _JSON,
        "response": _JSON,
    },
)


@given(st.sampled_from(PermissionPolicy), st.lists(_CONTROL | st.text(), max_size=4))
def test_the_driver_never_raises_and_only_writes_json_lines(
    policy: PermissionPolicy, lines: list[object]
) -> None:
    driver = ClaudeDriver(policy)
    for line in lines:
        text = line if isinstance(line, str) else json.dumps(line)
        chunks = driver.parse(text, p.Stream.STDOUT)
        assert chunks and all(isinstance(c, ChunkData) for c in chunks)
        for written in driver.take_outgoing().splitlines():
            assert json.loads(written)["type"] == "control_response"
        for chunk in chunks:
            if chunk.request_id is not None:
                assert json.loads(driver.answer_permission(chunk.request_id, True))


@settings(max_examples=50)
@given(st.text())
def test_arbitrary_text_never_raises_in_either_mode(line: str) -> None:
    for stream in p.Stream:
        assert isinstance(ClaudeDriver(PermissionPolicy.ALLOW).parse(line, stream), list)


# --------------------------------------------------------------------------- the real CLI

Predicate = Callable[[p.Event], bool]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def cli_env(tmp_path: Path, fake: FakeAnthropic) -> dict[str, str]:
    """What the session's CLI needs to reach the fake: its own HOME, key and base URL."""
    return claude_env(tmp_path / "home", fake.url)


@pytest.fixture
def client(backend_daemon: DaemonProcess) -> Iterator[Client]:
    with backend_daemon.client() as c:
        yield c


def chunks_until(events: SyncSubscription, session_id: str, last: Predicate) -> list[p.Chunk]:
    """Every chunk of the session up to and including the first that satisfies ``last``."""
    seen: list[p.Chunk] = []

    def collect(event: p.Event) -> bool:
        if isinstance(event, p.Chunk) and event.session_id == session_id:
            seen.append(event)
        return last(event)

    next_event(events, collect, timeout=30)
    return seen


def result_of(events: SyncSubscription, session_id: str) -> p.Chunk:
    chunk = next_event(events, is_chunk(session_id, p.ChunkKind.RESULT), timeout=30)
    assert isinstance(chunk, p.Chunk)
    return chunk


def last_request_text(fake: FakeAnthropic) -> str:
    return fake.visible_text(fake.model_requests()[-1])


def test_a_second_send_resumes_the_same_conversation(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "first question", cwd=project, env=cli_env)
        first = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        after_first = client.inspect(info.id).cli_session_id
        client.send("second question", info.id)
        second = result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    [init] = [c for c in first if c.kind is p.ChunkKind.SYSTEM and c.text.startswith("init")]
    assert init.cli_session_id is not None
    uuid.UUID(init.cli_session_id)  # Claude's own session id
    assert after_first == init.cli_session_id == client.inspect(info.id).cli_session_id
    assert second.cli_session_id == init.cli_session_id
    assert "You said: second question (turn 2)" in second.text
    assert (
        "user: first question\n"
        "assistant: Hello from fake Anthropic! You said: first question (turn 1)\n"
        "user: second question"
    ) in last_request_text(fake)


def test_replies_stream_as_partial_text_and_results_carry_usage_and_cost(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("claude", "say hello", cwd=project, env=cli_env)
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
    deltas = [c.text for c in chunks if c.kind is p.ChunkKind.TEXT and c.partial]
    result = chunks[-1]
    assert (
        "".join(deltas) == result.text == "Hello from fake Anthropic! You said: say hello (turn 1)"
    )
    assert result.usage is not None and not result.is_error
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.usage.cost_usd > 0 and result.usage.duration_ms is not None
    assert all(c.cli_session_id for c in chunks if c.stream is p.Stream.STDOUT)


def assert_billed(usage: p.Usage | None, bills: list[Bill]) -> None:
    """``usage`` is exactly what the fake billed for ``bills`` (cost as Claude prices it)."""
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (
        sum(b.input_tokens for b in bills),
        sum(b.output_tokens for b in bills),
        sum(b.cached_tokens for b in bills),
    )
    assert usage.cost_usd == pytest.approx(sum(price_usd(b) for b in bills), rel=1e-9)
    assert usage.scope is p.UsageScope.TURN


def test_four_long_lived_turns_total_what_the_api_billed_each_turn(
    backend_daemon: DaemonProcess,
    client: Client,
    fake: FakeAnthropic,
    project: Path,
    cli_env: dict[str, str],
) -> None:
    """Claude's long-lived results carry the process's running cost: counted once each."""
    results, bills, billed_before = [], [], 0
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "turn one", mode="long_lived", cwd=project, env=cli_env)
        for message in ("turn two", "turn three", "turn four", None):
            results.append(result_of(events, info.id))
            next_event(events, became(info.id, p.SessionStatus.IDLE))
            bills.append(fake.ledger.bills()[billed_before:])
            billed_before += len(bills[-1])
            if message is not None:
                client.send(message, info.id)
        session = client.inspect(info.id)
        client.terminate(info.id)

    assert [len(turn) for turn in bills] == [1, 1, 1, 1]
    for result, billed in zip(results, bills, strict=True):
        assert_billed(result.usage, billed)
    assert_billed(session.usage, fake.ledger.bills())
    ls = backend_daemon.cli("ls", "--json")
    [listed] = json.loads(ls.stdout)
    assert listed["usage"]["cost_usd"] == pytest.approx(session.usage.cost_usd)


def test_two_turns_resumed_total_what_the_api_billed_including_a_tool_round_trip(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    """In turn mode each process is one turn; a turn with a tool call is two API calls."""
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "first question", cwd=project, env=cli_env)
        first = result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        first_bills = fake.ledger.bills()
        client.send("RUN_TOOL echo hi", info.id)
        second = result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
    second_bills = fake.ledger.bills()[len(first_bills) :]

    assert (len(first_bills), len(second_bills)) == (1, 2)
    assert second.text == "Tool said: hi"
    assert_billed(first.usage, first_bills)
    assert_billed(second.usage, second_bills)
    assert_billed(client.inspect(info.id).usage, first_bills + second_bills)


def test_persona_instructions_and_model_reach_the_api(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "claude", "hello", persona="qa", model="claude-sonnet-4-5", cwd=project, env=cli_env
        )
        result_of(events, info.id)
    body = fake.model_requests()[-1].body
    assert body["model"] == "claude-sonnet-4-5"
    assert "You are the QA engineer on this task." in json.dumps(body["system"])


def test_a_tool_call_is_a_tool_use_chunk_then_a_tool_result_with_its_output(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("claude", f"RUN_TOOL echo {marker}", cwd=project, env=cli_env)
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
    kinds = [c.kind for c in chunks]
    use = chunks[kinds.index(p.ChunkKind.TOOL_USE)]
    output = chunks[kinds.index(p.ChunkKind.TOOL_RESULT)]
    assert kinds.index(p.ChunkKind.TOOL_USE) < kinds.index(p.ChunkKind.TOOL_RESULT)
    assert use.tool_name == "Bash"
    assert use.tool_input["command"] == f"echo {marker}"
    assert output.text == marker and not output.is_error
    assert chunks[-1].text == f"Tool said: {marker}"


def test_interrupt_mid_stream_then_a_send_resumes_the_conversation(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "SLOW tell me a story", cwd=project, env=cli_env)
        first = next_event(events, is_chunk(info.id, p.ChunkKind.TEXT), timeout=30)
        assert isinstance(first, p.Chunk) and first.partial
        client.interrupt(info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        client.send("and now briefly", info.id)
        result = result_of(events, info.id)

    assert "You said: and now briefly (turn 2)" in result.text
    assert result.cli_session_id == first.cli_session_id
    # Claude does not keep the partial reply of a turn stopped by SIGINT: on resume it
    # appends "Continue from where you left off." to that prompt and answers it itself with
    # "No response requested.". The earlier prompt is what proves the conversation went on.
    resumed = last_request_text(fake)
    assert resumed.startswith("user: SLOW tell me a story")
    assert resumed.endswith("user: and now briefly")


def test_a_killed_cli_is_an_error_and_the_session_takes_the_next_send(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "first question", cwd=project, env=cli_env)
        result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        client.send("HANG for ever", info.id)
        fake.wait_for_requests(lambda rs: sum(map(fake.is_turn_request, rs)) >= 2, timeout=30)
        pid = client.inspect(info.id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        error = next_event(events, is_chunk(info.id, p.ChunkKind.ERROR))
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        client.send("after the crash", info.id)
        result = result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    assert error.is_error  # type: ignore[union-attr]
    assert "You said: after the crash" in result.text and not result.is_error
    assert last_request_text(fake).startswith(
        "user: first question\nassistant: Hello from fake Anthropic! You said: first question"
    )


def test_in_turn_mode_a_tool_needing_permission_is_refused_as_an_error_result(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    target = project / "refused.txt"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("claude", f"RUN_TOOL touch {target}", cwd=project, env=cli_env)
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
    [refused] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_RESULT]
    assert refused.is_error
    assert not target.exists()


def test_in_turn_mode_policy_allow_lets_a_writing_tool_run(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    target = project / "allowed.txt"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "claude",
            f"RUN_TOOL touch {target}",
            permission_policy="allow",
            cwd=project,
            env=cli_env,
        )
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
    [ran] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_RESULT]
    assert not ran.is_error
    assert target.exists()


def test_long_lived_mode_takes_two_messages_in_one_process(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("claude", "first question", mode="long_lived", cwd=project, env=cli_env)
        result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        first = client.inspect(info.id)
        client.send("second question", info.id)
        second = result_of(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        after = client.inspect(info.id)

    assert first.pid is not None and after.pid == first.pid
    assert after.mode == "long_lived" and after.turns == 2
    assert after.cli_session_id == first.cli_session_id is not None
    assert "You said: second question (turn 2)" in second.text
    assert "user: first question\nassistant: Hello" in last_request_text(fake)
    client.terminate(info.id)


def test_long_lived_interrupt_is_in_band_and_the_process_keeps_the_conversation(
    client: Client, fake: FakeAnthropic, project: Path, cli_env: dict[str, str]
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start(
            "claude", "SLOW tell me a story", mode="long_lived", cwd=project, env=cli_env
        )
        next_event(events, is_chunk(info.id, p.ChunkKind.TEXT), timeout=30)
        pid = client.inspect(info.id).pid
        client.interrupt(info.id)
        stopping = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        client.send("and now briefly", info.id)
        result = result_of(events, info.id)

    texts = [c.text for c in stopping]
    assert any(t.startswith("control_response: success agentplex-interrupt-") for t in texts)
    assert "[Request interrupted by user]" in texts
    assert stopping[-1].is_error, "the interrupted turn's result"
    assert "You said: and now briefly (turn 2)" in result.text
    assert client.inspect(info.id).pid == pid
    assert last_request_text(fake).startswith("user: SLOW tell me a story\nassistant: H")
    client.terminate(info.id)


def test_long_lived_permission_request_waits_for_permit_then_the_tool_runs(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    target = project / "permitted.txt"
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start(
            "claude",
            f"RUN_TOOL touch {target}",
            mode="long_lived",
            permission_policy="ask",
            cwd=project,
            env=cli_env,
        )
        asked = next_event(events, is_chunk(info.id, p.ChunkKind.PERMISSION_REQUEST), timeout=30)
        next_event(events, became(info.id, p.SessionStatus.WAITING_INPUT))
        assert not target.exists()
        permitted = client.permit(True, info.id)
        ran = next_event(events, is_chunk(info.id, p.ChunkKind.TOOL_RESULT))
        result_of(events, info.id)

    assert isinstance(asked, p.Chunk) and asked.tool_name == "Bash"
    assert asked.tool_input["command"] == f"touch {target}"
    assert permitted.request_id == asked.request_id is not None
    assert not ran.is_error  # type: ignore[union-attr]
    assert target.exists()
    client.terminate(info.id)


@pytest.mark.parametrize("command", ["touch {target}", "echo pwned-by-deny"])
@pytest.mark.parametrize("mode", ["turn", "long_lived"])
def test_a_pm_persona_session_never_runs_the_shell_the_model_asks_for(
    client: Client, project: Path, tmp_path: Path, mode: str, command: str
) -> None:
    """The PM persona (deny; Read, Grep, Glob) gets no Bash, even from a model that calls it
    anyway: Claude refuses it by its own flags, nobody is asked, nothing runs (not even an
    ``echo``, which Claude's default permissions deem read-only and run)."""
    target = project / "pwned"
    with (
        FakeAnthropic(insist_on_bash=True) as fake,
        client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events,
    ):
        info = client.start(
            "claude",
            "RUN_TOOL " + command.format(target=target),
            persona="pm",
            mode=mode,
            cwd=project,
            env=claude_env(tmp_path / "home", fake.url),
        )
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
        status = client.inspect(info.id).status

    [call] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_USE]
    [refused] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_RESULT]
    assert call.tool_name == "Bash" and call.tool_input["command"] == command.format(target=target)
    assert refused.is_error and "pwned-by-deny" not in refused.text
    assert not target.exists()
    assert p.ChunkKind.PERMISSION_REQUEST not in {c.kind for c in chunks}
    assert status is not p.SessionStatus.WAITING_INPUT
    if mode == "long_lived":
        client.terminate(info.id)


def test_policy_deny_lets_claude_refuse_a_write_without_asking_in_long_lived_mode(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    target = project / "denied.txt"
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start(
            "claude",
            f"RUN_TOOL touch {target}",
            mode="long_lived",
            permission_policy="deny",
            cwd=project,
            env=cli_env,
        )
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))

    [refused] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_RESULT]
    assert refused.is_error and "don't ask mode" in refused.text
    assert p.ChunkKind.PERMISSION_REQUEST not in {c.kind for c in chunks}
    assert not target.exists()
    assert client.inspect(info.id).status is not p.SessionStatus.WAITING_INPUT
    client.terminate(info.id)


def test_ask_named_in_turn_mode_is_refused_at_start_naming_long_lived_mode(
    backend_daemon: DaemonProcess, client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    with pytest.raises(InvalidArgument, match="--mode long_lived"):
        client.start("claude", "hi", permission_policy="ask", cwd=project, env=cli_env)
    done = backend_daemon.cli("start", "-b", "claude", "--policy", "ask", "hi")
    assert done.returncode == 2
    assert "--mode long_lived" in done.stderr and done.stderr.count("\n") == 1
    assert client.list().sessions == []


def test_ask_from_a_persona_in_turn_mode_falls_back_to_deny(
    client: Client, project: Path, cli_env: dict[str, str]
) -> None:
    """QA's policy is ask: in turn mode its session runs under deny (its tools pre-allowed)."""
    target = project / "written.txt"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(
            "claude", f"RUN_TOOL touch {target}", persona="qa", cwd=project, env=cli_env
        )
        chunks = chunks_until(events, info.id, is_chunk(info.id, p.ChunkKind.RESULT))
    header = json.loads(Path(client.inspect(info.id).transcript).read_text().splitlines()[0])
    argv = header["argv"]
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert argv[argv.index("--tools") + 1] == "Read,Grep,Glob,Bash"
    [ran] = [c for c in chunks if c.kind is p.ChunkKind.TOOL_RESULT]
    assert not ran.is_error and target.exists(), "Bash is one of QA's allowed tools"
