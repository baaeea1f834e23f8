"""The ``acp`` backend: its driver against hand-written and recorded ACP lines, then the real
``gemini --acp`` (Gemini CLI 0.61.0) under the daemon against FakeGemini.

The recorded lines are verbatim from ``gemini --acp -m gemini-2.5-flash`` talking to FakeGemini
(long lists such as ``authMethods`` and ``availableCommands`` shortened).
"""

from __future__ import annotations

import json
import os
import signal
import string
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes import FakeGemini, gemini_env
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DaemonProcess, became, descendants_with_marker, is_chunk, next_event

from agentplex import protocol as p
from agentplex.cli.render import describe
from agentplex.client import Client, SyncSubscription
from agentplex.plugins.acp import AcpDriver
from agentplex.plugins.acp_backend import AcpBackend
from agentplex.plugins.api import BackendMode, ChunkData, PermissionPolicy, SessionSpec
from agentplex.protocol import ChunkKind, Stream, Usage
from agentplex.protocol.errors import NothingToAnswer, SessionEnded

SID = "7e19406e-c515-4630-a639-10ed772658cc"
TOOL_ID = "run_shell_command__run_shell_command_1795282922405_0"

INITIALIZED = (
    '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":1,"authMethods":[{"id":"gemini-api-key",'
    '"name":"Gemini API key","description":"Use an API key with Gemini Developer API","_meta":'
    '{"api-key":{"provider":"google"}}}],"agentInfo":{"name":"gemini-cli","title":"Gemini CLI",'
    '"version":"0.61.0"},"agentCapabilities":{"loadSession":true,"promptCapabilities":{"image":'
    'true,"audio":true,"embeddedContext":true},"mcpCapabilities":{"http":true,"sse":true}}}}'
)
SESSION_CREATED = (
    '{"jsonrpc":"2.0","id":2,"result":{"sessionId":"' + SID + '","modes":{"availableModes":'
    '[{"id":"default","name":"Default","description":"Prompts for approval"},{"id":"yolo",'
    '"name":"YOLO","description":"Auto-approves all tools"}],"currentModeId":"default"},'
    '"models":{"availableModels":[{"modelId":"auto","name":"Auto"}],'
    '"currentModelId":"gemini-2.5-flash"}}}'
)
COMMANDS = (
    '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"' + SID + '","update":'
    '{"sessionUpdate":"available_commands_update","availableCommands":[{"name":"memory",'
    '"description":"Manage memory."},{"name":"init","description":"Analyzes the project"}]}}}'
)
MESSAGE_CHUNK = (
    '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"' + SID + '","update":'
    '{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hello from fa"}}}}'
)
TOOL_CALL = (
    '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"' + SID + '","update":'
    '{"sessionUpdate":"tool_call","toolCallId":"' + TOOL_ID + '","status":"in_progress",'
    '"title":"echo marker42","content":[{"type":"content","content":{"type":"text","text":'
    '"[current working directory /tmp/acpx/proj] (Run a command)"}}],"locations":[],'
    '"kind":"execute"}}}'
)
TOOL_DONE = (
    '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"' + SID + '","update":'
    '{"sessionUpdate":"tool_call_update","toolCallId":"' + TOOL_ID + '","status":"completed",'
    '"title":"touch made.txt && echo marker43","content":[{"type":"content","content":'
    '{"type":"text","text":"marker43"}}],"locations":[],"kind":"execute"}}}'
)
PERMISSION = (
    '{"jsonrpc":"2.0","id":0,"method":"session/request_permission","params":{"sessionId":"'
    + SID
    + '","options":[{"optionId":"proceed_always","name":"Allow for this session","kind":'
    '"allow_always"},{"optionId":"proceed_once","name":"Allow","kind":"allow_once"},'
    '{"optionId":"cancel","name":"Reject","kind":"reject_once"}],"toolCall":{"toolCallId":"'
    + TOOL_ID
    + '","status":"pending","title":"touch made.txt && echo marker43","content":[{"type":'
    '"content","content":{"type":"text","text":"[current working directory /tmp/acpx/proj] '
    '(Run a command)"}}],"locations":[],"kind":"execute"}}}'
)
PROMPT_DONE = (
    '{"jsonrpc":"2.0","id":3,"result":{"stopReason":"end_turn","_meta":{"quota":{"token_count":'
    '{"input_tokens":11894,"output_tokens":18},"model_usage":[{"model":"gemini-2.5-flash",'
    '"token_count":{"input_tokens":11894,"output_tokens":18}}]}}}}'
)
PROMPT_CANCELLED = '{"jsonrpc":"2.0","id":3,"result":{"stopReason":"cancelled"}}'
PROMPT_FAILED = (
    '{"jsonrpc":"2.0","id":3,"error":{"code":500,"message":"{\\"error\\":{\\"code\\":500,'
    '\\"message\\":\\"Fake Gemini: HTTP 500 on request (FAIL500)\\",'
    '\\"status\\":\\"INTERNAL\\"}}"}}'
)


# --------------------------------------------------------------------------- driver helpers


def _spec(**fields: Any) -> SessionSpec:
    defaults: dict[str, Any] = {
        "session_id": "s1",
        "cwd": Path("/work/proj"),
        "mode": BackendMode.LONG_LIVED,
        "command": ("gemini", "--acp"),
    }
    return SessionSpec(**{**defaults, **fields})


def _sent(data: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages in bytes the driver wrote (one per line, blank lines skipped)."""
    # split on "\n" only: str.splitlines() also cuts at U+0085 and U+2028 inside a JSON string
    return [json.loads(line) for line in data.decode().split("\n") if line.strip()]


def _feed(driver: AcpDriver, *lines: str) -> list[ChunkData]:
    return [chunk for line in lines for chunk in driver.parse(line, Stream.STDOUT)]


def _ready(driver: AcpDriver, *messages: str) -> list[dict[str, Any]]:
    """Run the handshake with ``messages`` sent early; returns what went out after it."""
    driver.opening()
    for message in messages:
        assert driver.encode_input(message) == b""
    _feed(driver, INITIALIZED)
    assert _sent(driver.take_outgoing())[0]["method"] == "session/new"
    _feed(driver, SESSION_CREATED)
    return _sent(driver.take_outgoing())


# --------------------------------------------------------------------------- driver: handshake


def test_the_opening_is_initialize_with_no_client_capabilities() -> None:
    [request] = _sent(AcpDriver(_spec()).opening())
    assert request == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": 1,
            "clientCapabilities": {
                "fs": {"readTextFile": False, "writeTextFile": False},
                "terminal": False,
            },
        },
    }


def test_messages_sent_before_the_session_exists_are_held_then_prompted_in_order() -> None:
    driver = AcpDriver(_spec())
    driver.opening()
    assert driver.encode_input("first") == b""
    assert driver.encode_input("second") == b""
    [initialized] = _feed(driver, INITIALIZED)
    assert initialized == ChunkData(ChunkKind.SYSTEM, "initialized gemini-cli 0.61.0 (ACP 1)")
    [new] = _sent(driver.take_outgoing())
    assert new["method"] == "session/new"
    assert new["params"] == {"cwd": "/work/proj", "mcpServers": []}

    [created] = _feed(driver, SESSION_CREATED)
    assert created.kind is ChunkKind.SYSTEM
    assert created.cli_session_id == SID and created.model == "gemini-2.5-flash"
    [prompt] = _sent(driver.take_outgoing())
    assert prompt == {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "session/prompt",
        "params": {"sessionId": SID, "prompt": [{"type": "text", "text": "first"}]},
    }
    # "second" waits for the first turn: Gemini CLI aborts a running prompt for a new one.
    [result] = _feed(driver, PROMPT_DONE)
    assert result.kind is ChunkKind.RESULT
    [second] = _sent(driver.take_outgoing())
    assert second["params"]["prompt"] == [{"type": "text", "text": "second"}]


def test_persona_instructions_lead_the_first_prompt_only() -> None:
    driver = AcpDriver(_spec(instructions="You are QA."))
    [prompt] = _ready(driver, "hello")
    assert prompt["params"]["prompt"] == [
        {"type": "text", "text": "You are QA."},
        {"type": "text", "text": "hello"},
    ]
    _feed(driver, PROMPT_DONE)
    [later] = _sent(driver.encode_input("again"))
    assert later["params"]["prompt"] == [{"type": "text", "text": "again"}]


def test_a_model_is_set_through_session_set_model_before_any_prompt() -> None:
    driver = AcpDriver(_spec(model="gemini-2.5-pro"))
    [set_model] = _ready(driver, "hi")
    assert set_model["method"] == "session/set_model"
    assert set_model["params"] == {"sessionId": SID, "modelId": "gemini-2.5-pro"}
    [chunk] = _feed(driver, '{"jsonrpc":"2.0","id":3,"result":{}}')
    assert chunk.model == "gemini-2.5-pro"
    [prompt] = _sent(driver.take_outgoing())
    assert prompt["method"] == "session/prompt"


def test_a_model_the_agent_refuses_is_an_error_and_the_prompt_still_goes_out() -> None:
    driver = AcpDriver(_spec(model="nope"))
    _ready(driver, "hi")
    [chunk] = _feed(driver, '{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}')
    assert chunk.kind is ChunkKind.ERROR and "session/set_model failed" in chunk.text
    assert _sent(driver.take_outgoing())[0]["method"] == "session/prompt"


def test_a_failed_session_new_ends_the_turn_and_the_next_message_retries_it() -> None:
    driver = AcpDriver(_spec())
    driver.opening()
    driver.encode_input("hi")
    _feed(driver, INITIALIZED)
    driver.take_outgoing()
    error, result = _feed(
        driver, '{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"auth required"}}'
    )
    assert error.kind is ChunkKind.ERROR and "auth required" in error.text
    assert result.kind is ChunkKind.RESULT and result.is_error
    assert driver.take_outgoing() == b""
    [retry] = _sent(driver.encode_input("again"))
    assert retry["method"] == "session/new"


def test_a_refused_initialize_is_the_drivers_failure_and_a_failed_session_new_is_not() -> None:
    driver = AcpDriver(_spec())
    driver.opening()
    driver.encode_input("hi")
    assert driver.failure() is None
    [error, result] = _feed(
        driver, '{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"no API key"}}'
    )
    assert error.kind is ChunkKind.ERROR and "initialize failed: no API key" in error.text
    assert result.kind is ChunkKind.RESULT and result.is_error
    assert driver.failure() == "the ACP agent refused initialize: no API key (-32000)"
    retried = AcpDriver(_spec())
    retried.opening()
    _feed(retried, INITIALIZED)
    _feed(retried, '{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"auth required"}}')
    assert retried.failure() is None  # the next message retries session/new


# --------------------------------------------------------------------------- driver: updates


def test_session_updates_become_typed_chunks_carrying_the_acp_session_id() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "go")
    commands, text, tool_use, tool_result = _feed(
        driver, COMMANDS, MESSAGE_CHUNK, TOOL_CALL, TOOL_DONE
    )
    assert commands == ChunkData(ChunkKind.SYSTEM, "commands: /memory, /init", cli_session_id=SID)
    assert text == ChunkData(ChunkKind.TEXT, "Hello from fa", partial=True, cli_session_id=SID)
    assert tool_use == ChunkData(
        ChunkKind.TOOL_USE, "execute: echo marker42", tool_name="execute", cli_session_id=SID
    )
    assert tool_result == ChunkData(ChunkKind.TOOL_RESULT, "marker43", cli_session_id=SID)


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (
            {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}},
            ChunkData(ChunkKind.THINKING, "hmm", partial=True),
        ),
        (
            {
                "sessionUpdate": "tool_call",
                "toolCallId": "t1",
                "title": "Read a.py",
                "kind": "read",
                "rawInput": {"path": "a.py"},
            },
            ChunkData(
                ChunkKind.TOOL_USE, "read: Read a.py", tool_name="read", tool_input={"path": "a.py"}
            ),
        ),
        (
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": "t2",
                "status": "failed",
                "content": [{"type": "content", "content": {"type": "text", "text": "boom"}}],
            },
            ChunkData(ChunkKind.TOOL_RESULT, "boom", is_error=True),
        ),
        (
            {"sessionUpdate": "tool_call_update", "toolCallId": "t3", "rawOutput": {"n": 1}},
            ChunkData(ChunkKind.SYSTEM, "tool t3: updated"),
        ),
        (
            {
                "sessionUpdate": "plan",
                "entries": [{"content": "write tests", "priority": "high", "status": "pending"}],
            },
            ChunkData(ChunkKind.SYSTEM, "plan:\n[pending] write tests"),
        ),
        (
            {"sessionUpdate": "current_mode_update", "currentModeId": "yolo"},
            ChunkData(ChunkKind.SYSTEM, "mode: yolo"),
        ),
        (
            {"sessionUpdate": "config_option_update", "configOptions": []},
            ChunkData(ChunkKind.SYSTEM, "config_option_update"),
        ),
    ],
)
def test_each_kind_of_session_update(update: dict[str, Any], expected: ChunkData) -> None:
    driver = AcpDriver(_spec())
    driver.parse(TOOL_CALL.replace(TOOL_ID, "t3"), Stream.STDOUT)  # t3 is already announced
    line = json.dumps({"jsonrpc": "2.0", "method": "session/update", "params": {"update": update}})
    chunks = driver.parse(line, Stream.STDOUT)
    assert chunks[-1] == expected


def test_a_tool_update_without_a_tool_call_first_is_announced_then_reported() -> None:
    driver = AcpDriver(_spec())
    tool_use, tool_result = _feed(driver, TOOL_DONE)
    assert tool_use.kind is ChunkKind.TOOL_USE and tool_use.tool_name == "execute"
    assert tool_result.kind is ChunkKind.TOOL_RESULT and tool_result.text == "marker43"


def test_the_prompt_response_ends_the_turn_with_its_stop_reason_and_usage() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "go")
    [result] = _feed(driver, PROMPT_DONE)
    assert result.kind is ChunkKind.RESULT and result.text == "end_turn" and not result.is_error
    assert result.cli_session_id == SID
    assert result.usage is not None and result.usage.duration_ms is not None
    assert msgspec.structs.replace(result.usage, duration_ms=None) == Usage(
        input_tokens=11894, output_tokens=18
    )


def test_acp_usage_is_preferred_and_a_refusal_is_an_error() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "go")
    line = (
        '{"jsonrpc":"2.0","id":3,"result":{"stopReason":"refusal","usage":{"inputTokens":5,'
        '"outputTokens":2,"cachedReadTokens":3,"totalTokens":10}}}'
    )
    [result] = _feed(driver, line)
    assert result.is_error and result.text == "refusal"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    assert result.usage.cached_tokens == 3


def test_a_prompt_error_response_is_an_error_chunk_and_an_error_result() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "FAIL500")
    error, result = _feed(driver, PROMPT_FAILED)
    assert error.kind is ChunkKind.ERROR and "FAIL500" in error.text
    assert result.kind is ChunkKind.RESULT and result.is_error and "(500)" in result.text


def test_lines_that_are_not_acp_messages_are_raw_and_stderr_is_raw() -> None:
    driver = AcpDriver(_spec())
    for line in ["Ripgrep is not available.", "[1, 2]", "{}", '{"id": 99, "result": {}}']:
        assert driver.parse(line, Stream.STDOUT) == [ChunkData(ChunkKind.RAW, line)]
    assert driver.parse("{}", Stream.STDERR) == [ChunkData(ChunkKind.RAW, "{}")]


# --------------------------------------------------------------------------- driver: requests


def test_ask_publishes_the_permission_request_and_a_person_answers_it() -> None:
    driver = AcpDriver(_spec(permission_policy=PermissionPolicy.ASK))
    _ready(driver, "go")
    tool_use, asked = _feed(driver, PERMISSION)
    assert tool_use.kind is ChunkKind.TOOL_USE
    assert asked.kind is ChunkKind.PERMISSION_REQUEST and asked.request_id == "0"
    assert asked.text == "permission: execute: touch made.txt && echo marker43"
    assert driver.take_outgoing() == b""
    [answer] = _sent(driver.answer_permission("0", allow=True))
    assert answer == {
        "jsonrpc": "2.0",
        "id": 0,
        "result": {"outcome": {"outcome": "selected", "optionId": "proceed_once"}},
    }
    with pytest.raises(NothingToAnswer):
        driver.answer_permission("0", allow=False)


def test_a_denial_picks_the_reject_option_and_without_one_cancels() -> None:
    driver = AcpDriver(_spec())
    _feed(driver, PERMISSION)
    [answer] = _sent(driver.answer_permission("0", allow=False))
    assert answer["result"]["outcome"] == {"outcome": "selected", "optionId": "cancel"}
    only_allow = PERMISSION.replace('"id":0', '"id":"p7"').replace('"reject_once"', '"x"')
    _feed(driver, only_allow)
    [answer] = _sent(driver.answer_permission("p7", allow=False))
    assert answer == {"jsonrpc": "2.0", "id": "p7", "result": {"outcome": {"outcome": "cancelled"}}}


@pytest.mark.parametrize(
    ("policy", "option"),
    [(PermissionPolicy.ALLOW, "proceed_once"), (PermissionPolicy.DENY, "cancel")],
)
def test_allow_and_deny_policies_answer_at_once_and_say_so(
    policy: PermissionPolicy, option: str
) -> None:
    driver = AcpDriver(_spec(permission_policy=policy))
    _ready(driver, "go")
    _, asked = _feed(driver, PERMISSION)
    assert asked.kind is ChunkKind.PERMISSION_REQUEST and asked.request_id is None
    assert f"by policy: {option}" in asked.text
    [answer] = _sent(driver.take_outgoing())
    assert answer["id"] == 0 and answer["result"]["outcome"]["optionId"] == option


def test_requests_the_client_cannot_serve_get_method_not_found() -> None:
    driver = AcpDriver(_spec())
    line = '{"jsonrpc":"2.0","id":"r1","method":"fs/read_text_file","params":{"path":"/etc/x"}}'
    [chunk] = driver.parse(line, Stream.STDOUT)
    assert chunk.kind is ChunkKind.SYSTEM and "fs/read_text_file" in chunk.text
    [answer] = _sent(driver.take_outgoing())
    assert answer["id"] == "r1" and answer["error"]["code"] == -32601


# --------------------------------------------------------------------------- driver: interrupt


def test_interrupt_sends_session_cancel_and_cancels_open_permission_requests() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "go")
    _feed(driver, PERMISSION)
    answer, cancel = _sent(driver.interrupt())
    assert answer == {"jsonrpc": "2.0", "id": 0, "result": {"outcome": {"outcome": "cancelled"}}}
    assert cancel == {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": SID}}
    [result] = _feed(driver, PROMPT_CANCELLED)
    assert result.kind is ChunkKind.RESULT and result.text == "cancelled" and not result.is_error
    assert describe(result).startswith("[result] cancelled")  # not "[result] ok"


def test_a_tool_call_renders_its_name_once() -> None:
    driver = AcpDriver(_spec())
    _ready(driver, "go")
    [use] = _feed(driver, TOOL_CALL)
    assert describe(use) == "[tool_use] execute: echo marker42"


def test_interrupt_before_the_session_exists_drops_the_held_message() -> None:
    driver = AcpDriver(_spec())
    driver.opening()
    driver.encode_input("never mind")
    assert _sent(driver.interrupt()) == []  # a blank line: no SIGINT, nothing for the agent
    _feed(driver, INITIALIZED)
    driver.take_outgoing()
    [created, result] = _feed(driver, SESSION_CREATED)
    assert created.kind is ChunkKind.SYSTEM
    assert result.kind is ChunkKind.RESULT and result.text == "cancelled"
    assert driver.take_outgoing() == b""


# --------------------------------------------------------------------------- backend


def test_the_backend_runs_the_given_command_long_lived() -> None:
    backend = AcpBackend()
    assert backend.modes == (BackendMode.LONG_LIVED,)
    assert backend.locate().available and backend.version("x") is None
    assert backend.argv(_spec(), None, None) == ["gemini", "--acp"]
    assert backend.argv(_spec(command=()), None, None) == []  # the daemon says "needs a command"
    caps = backend.capabilities
    assert caps.long_lived and caps.streamed_deltas and caps.tool_events
    assert caps.permission_requests and not caps.resume


# --------------------------------------------------------------------------- never raises

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(string.ascii_letters + "_", max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_UPDATE = st.fixed_dictionaries(
    {
        "sessionUpdate": st.sampled_from(
            ["agent_message_chunk", "tool_call", "tool_call_update", "plan", "x"]
        )
        | _JSON
    },
    optional={
        "content": _JSON
        | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["content", "diff", "x"])})),
        "toolCallId": _JSON,
        "status": st.sampled_from(["completed", "failed", "pending"]) | _JSON,
        "title": _JSON,
        "kind": _JSON,
        "rawOutput": _JSON,
        "entries": _JSON,
    },
)
_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 4) | st.text(max_size=3) | _JSON,
        "method": st.sampled_from(
            ["session/update", "session/request_permission", "fs/read_text_file"]
        )
        | _JSON,
        "params": st.fixed_dictionaries({}, optional={"update": _UPDATE, "options": _JSON}) | _JSON,
        "result": st.fixed_dictionaries(
            {}, optional={"sessionId": _JSON, "stopReason": _JSON, "usage": _JSON}
        )
        | _JSON,
        "error": st.fixed_dictionaries({}, optional={"code": _JSON, "message": _JSON}) | _JSON,
    },
)


@given(st.lists(st.text() | _MESSAGE.map(json.dumps), max_size=6), st.sampled_from(Stream))
@settings(max_examples=300)
def test_parse_never_raises(lines: list[str], stream: Stream) -> None:
    driver = AcpDriver(_spec(permission_policy=PermissionPolicy.ALLOW))
    driver.opening()
    driver.encode_input("hi")
    for line in lines:
        for chunk in driver.parse(line, stream):
            assert isinstance(chunk, ChunkData)
        answered = {message.get("id") for message in _sent(driver.take_outgoing())}
        if stream is Stream.STDOUT and (request_id := _request_id(line)) is not None:
            assert request_id in answered  # every request of the agent gets an answer
    _sent(driver.interrupt())


def _request_id(line: str) -> int | str | None:
    """The id of a JSON-RPC request the driver must answer, if ``line`` is one."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None
    request_id = message.get("id")
    if isinstance(request_id, str) or (type(request_id) is int and abs(request_id) < 2**63):
        return request_id
    return None


# --------------------------------------------------------------------------- the real gemini --acp

NO_PTY = {"tools": {"shell": {"enableInteractiveShell": False}}}
"""With a pseudo-terminal, Gemini CLI reports shell output as an ANSI snapshot, which its ACP
layer drops: the ``tool_call_update`` then has empty content. Without one it is plain text."""


@pytest.fixture
def gemini(
    backend_daemon: DaemonProcess, agent_clis: dict[str, Path], tmp_path: Path
) -> Iterator[_Gemini]:
    with FakeGemini() as fake, backend_daemon.client(timeout=20) as client:
        env = gemini_env(tmp_path / "home", fake.url)
        settings_file = tmp_path / "home" / ".gemini" / "settings.json"
        settings_file.write_text(json.dumps({**json.loads(settings_file.read_text()), **NO_PTY}))
        project = tmp_path / "project"
        project.mkdir()
        yield _Gemini(client, fake, env, project, str(agent_clis["gemini"]))


class _Gemini:
    """What a test needs to run ``gemini --acp`` sessions against the fake."""

    def __init__(
        self, client: Client, fake: FakeGemini, env: dict[str, str], cwd: Path, exe: str
    ) -> None:
        self.client, self.fake, self.env, self.cwd, self.exe = client, fake, env, cwd, exe

    def start(self, prompt: str, **options: Any) -> p.SessionInfo:
        """Start ``gemini --acp``; the model is its ``-m`` flag unless ``model`` is given."""
        flags = [] if "model" in options else ["-m", "gemini-2.5-flash"]
        return self.client.start(
            "acp", prompt, cwd=self.cwd, env=self.env, argv=[self.exe, "--acp", *flags], **options
        )

    def last_request(self) -> str:
        return self.fake.visible_text(self.fake.model_requests()[-1])


def _turn(events: SyncSubscription, session_id: str) -> list[p.Chunk]:
    """This session's chunks up to and including the RESULT that ends the turn."""
    chunks: list[p.Chunk] = []
    while not chunks or chunks[-1].kind is not ChunkKind.RESULT:
        event = next_event(events, is_chunk(session_id), timeout=30)
        assert isinstance(event, p.Chunk)
        chunks.append(event)
    return chunks


def test_two_prompts_share_one_gemini_process_and_its_acp_session(gemini: _Gemini) -> None:
    with gemini.client.subscribe(p.CHUNK_TOPIC) as events:
        info = gemini.start("first question", persona="qa", permission_policy="allow")
        first = _turn(events, info.id)
        after_first = gemini.client.inspect(info.id)
        gemini.client.send("second question", info.id)
        second = _turn(events, info.id)
    after_second = gemini.client.inspect(info.id)

    reply = "Hello from fake Gemini! You said: "
    deltas = [c for c in first if c.kind is ChunkKind.TEXT]
    assert len(deltas) > 1 and all(c.partial for c in deltas)  # streamed, not whole
    assert "".join(c.text for c in deltas).startswith(reply)
    assert "".join(c.text for c in second if c.kind is ChunkKind.TEXT).endswith("(turn 2)")
    assert first[-1].text == second[-1].text == "end_turn"
    assert second[-1].usage is not None and second[-1].usage.input_tokens > 0

    history = gemini.last_request()
    assert "first question" in history and "(turn 1)" in history and "second question" in history
    assert "You are the QA engineer" in history  # the persona's instructions reached the agent
    session_chunk = next(c for c in first if c.cli_session_id)
    assert after_first.cli_session_id == session_chunk.cli_session_id
    assert after_second.cli_session_id == after_first.cli_session_id
    assert after_second.pid == after_first.pid and after_second.pid is not None
    assert after_second.status is p.SessionStatus.IDLE and after_second.turns == 2


def test_a_shell_tool_call_round_trip_on_the_model_set_over_acp(gemini: _Gemini) -> None:
    marker = f"acp-{uuid.uuid4().hex[:8]}"
    with gemini.client.subscribe(p.CHUNK_TOPIC) as events:
        info = gemini.start(
            f"RUN_TOOL echo {marker}", permission_policy="allow", model="gemini-2.5-flash"
        )
        chunks = _turn(events, info.id)
    # No -m flag: session/set_model chose the model (Gemini's own default is "auto").
    assert all("/gemini-2.5-flash:" in r.path for r in gemini.fake.model_requests())
    assert any(c.kind is ChunkKind.SYSTEM and c.model == "gemini-2.5-flash" for c in chunks)
    kinds = [c.kind for c in chunks]
    use = chunks[kinds.index(ChunkKind.TOOL_USE)]
    result = chunks[kinds.index(ChunkKind.TOOL_RESULT)]
    assert kinds.index(ChunkKind.TOOL_USE) < kinds.index(ChunkKind.TOOL_RESULT)
    assert use.tool_name == "execute" and marker in use.text
    assert marker in result.text and not result.is_error
    assert f"Tool said: {marker}" in gemini.last_request() + "".join(c.text for c in chunks)


def test_ask_waits_for_a_person_who_allows_one_tool_and_denies_the_next(
    gemini: _Gemini,
) -> None:
    # `echo` alone is read-only and runs unasked; writing a file needs permission.
    marker = f"acp-{uuid.uuid4().hex[:8]}"
    with gemini.client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = gemini.start(f"RUN_TOOL touch made.txt && echo {marker}", permission_policy="ask")
        asked = next_event(events, is_chunk(info.id, ChunkKind.PERMISSION_REQUEST), timeout=30)
        next_event(events, became(info.id, p.SessionStatus.WAITING_INPUT))
        assert isinstance(asked, p.Chunk) and asked.request_id is not None
        assert gemini.client.permit(True, info.id).request_id == asked.request_id
        allowed = _turn(events, info.id)

        gemini.client.send("RUN_TOOL touch denied.txt && echo nope", info.id)
        next_event(events, is_chunk(info.id, ChunkKind.PERMISSION_REQUEST), timeout=30)
        next_event(events, became(info.id, p.SessionStatus.WAITING_INPUT))
        gemini.client.permit(False, info.id)
        denied = _turn(events, info.id)

    [tool_result] = [c for c in allowed if c.kind is ChunkKind.TOOL_RESULT]
    assert marker in tool_result.text
    assert (gemini.cwd / "made.txt").exists()
    assert not (gemini.cwd / "denied.txt").exists()
    # A rejected call gets no tool_call_update from Gemini; the model is told it was cancelled.
    assert "was canceled by the user" in "".join(c.text for c in denied)


def test_a_message_sent_mid_turn_waits_for_the_turn_instead_of_aborting_it(
    gemini: _Gemini,
) -> None:
    gemini.fake.slow_delay = 0.02
    with gemini.client.subscribe(p.CHUNK_TOPIC) as events:
        info = gemini.start("SLOW first", permission_policy="allow")
        next_event(events, is_chunk(info.id, ChunkKind.TEXT), timeout=30)
        gemini.client.send("then this", info.id)
        first = _turn(events, info.id)
        second = _turn(events, info.id)
    assert first[-1].text == "end_turn"  # not "cancelled"
    assert "".join(c.text for c in first if c.kind is ChunkKind.TEXT).endswith("(turn 1)")
    assert "".join(c.text for c in second if c.kind is ChunkKind.TEXT).endswith("(turn 2)")


def test_interrupt_cancels_the_prompt_in_band_and_the_conversation_goes_on(
    gemini: _Gemini,
) -> None:
    with gemini.client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = gemini.start("first question", permission_policy="allow")
        _turn(events, info.id)
        gemini.client.send("SLOW tell me everything", info.id)
        next_event(events, is_chunk(info.id, ChunkKind.TEXT), timeout=30)
        gemini.client.interrupt(info.id)
        cancelled = _turn(events, info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        gemini.client.send("and now briefly", info.id)
        after = _turn(events, info.id)

    assert cancelled[-1].text == "cancelled" and not cancelled[-1].is_error
    streamed = "".join(c.text for c in cancelled if c.kind is ChunkKind.TEXT)
    assert not streamed.endswith("(turn 2)")  # stopped before the reply was complete
    assert after[-1].text == "end_turn"
    history = gemini.last_request()
    assert "first question" in history and "and now briefly" in history
    # Gemini CLI leaves a cancelled turn out of the history: the SLOW prompt is not resent.
    assert gemini.client.inspect(info.id).pid == info.pid


REFUSES_INITIALIZE = """\
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if "id" in message and "method" in message:
        error = {"code": -32000, "message": "no credentials: set GEMINI_API_KEY"}
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}), flush=True)
"""
"""An ACP agent that refuses every request (``initialize`` first) and keeps running."""


def test_an_agent_that_refuses_initialize_fails_the_session_with_its_error(
    client: Client,
) -> None:
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("acp", "hello", argv=[sys.executable, "-c", REFUSES_INITIALIZE])
        ended = next_event(
            events,
            lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id,
            timeout=30,
        )
    assert isinstance(ended, p.SessionTerminated)
    assert ended.session.status is p.SessionStatus.FAILED
    assert "no credentials: set GEMINI_API_KEY" in ended.reason
    with pytest.raises(SessionEnded):
        client.send("are you there?", info.id)
    assert descendants_with_marker(info.id) == []  # the agent process was stopped


def test_killing_the_agent_process_ends_the_session_as_failed(gemini: _Gemini) -> None:
    with gemini.client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = gemini.start("HANG on", permission_policy="allow")
        gemini.fake.wait_for_requests(
            lambda requests: any("HANG" in gemini.fake.visible_text(r) for r in requests),
            timeout=30,
        )
        pid = gemini.client.inspect(info.id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        ended = next_event(
            events, lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id
        )
    assert isinstance(ended, p.SessionTerminated)
    assert ended.session.status is p.SessionStatus.FAILED
    assert "signal" in ended.reason.lower() or "sigkill" in ended.reason.lower()
    lines = Path(ended.session.transcript).read_text().splitlines()
    footer = json.loads(lines[-1])
    assert footer["type"] == "footer" and footer["status"] == "failed"
