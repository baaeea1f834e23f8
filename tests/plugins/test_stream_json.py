"""ClaudeStreamParser against Claude Code's real stream-json lines (docs/agent-clis.md §1).

The samples are verbatim except where the document trimmed them with ``…``: elided list
items and objects are left out so that each line is valid JSON again.
"""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.plugins.api import ChunkData
from agentplex.plugins.stream_json import ClaudeStreamParser, tool_summary
from agentplex.protocol import ChunkKind, Stream, Usage

SID = "8bcc925a-…"

INIT = (
    '{"type":"system","subtype":"init","cwd":"/home/u/proj","session_id":"8bcc925a-…",'
    '"tools":["Task","Bash"],"mcp_servers":[],"model":"claude-opus-4-8[1m]",'
    '"permissionMode":"default","slash_commands":[],"apiKeySource":"ANTHROPIC_API_KEY",'
    '"claude_code_version":"2.1.197","output_style":"default","agents":[],"skills":[],'
    '"plugins":[],"analytics_disabled":true,"product_feedback_disabled":true,"uuid":"…",'
    '"memory_paths":{},"fast_mode_state":"off"}'
)
ASSISTANT_TEXT = (
    '{"type":"assistant","message":{"id":"msg_fake_714c…","type":"message","role":"assistant",'
    '"model":"claude-opus-4-8","content":[{"type":"text","text":"Hello from fake Anthropic! '
    'You said: say hello (turn 1)"}],"stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":1668,"output_tokens":1},"context_management":null},'
    '"parent_tool_use_id":null,"session_id":"8bcc925a-…","uuid":"…",'
    '"request_id":"req_fake_a1ab8644f640"}'
)
RESULT_SUCCESS = (
    '{"type":"result","subtype":"success","is_error":false,"api_error_status":null,'
    '"duration_ms":182,"duration_api_ms":44,"ttft_ms":166,"ttft_stream_ms":163,'
    '"time_to_request_ms":136,"num_turns":1,"result":"Hello from fake Anthropic! You said: '
    'say hello (turn 1)","stop_reason":"end_turn","session_id":"8bcc925a-…",'
    '"total_cost_usd":0.008865,"usage":{"input_tokens":1668,"cache_creation_input_tokens":0,'
    '"cache_read_input_tokens":0,"output_tokens":21,"server_tool_use":{},'
    '"service_tier":"standard"},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":1668,'
    '"outputTokens":21,"costUSD":0.008865,"contextWindow":1000000,"maxOutputTokens":64000}},'
    '"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","uuid":"…"}'
)
TOOL_USE = (
    '{"type":"assistant","message":{"id":"msg_fake_7d2c…","content":[{"type":"tool_use",'
    '"id":"toolu_f15a…","name":"Bash","input":{"command":"echo hi",'
    '"description":"Run a command"}}]}}'
)
TOOL_RESULT = (
    '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_f15a…",'
    '"type":"tool_result","content":"hi","is_error":false}]},"parent_tool_use_id":null,'
    '"session_id":"…","uuid":"…","timestamp":"…","tool_use_result":{"stdout":"hi",'
    '"stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false}}'
)
CAN_USE_TOOL = (
    '{"type":"control_request","request_id":"dabd…","request":{"subtype":"can_use_tool",'
    '"tool_name":"Bash","input":{"command":"touch x.txt && echo made"},'
    '"permission_suggestions":[],"blocked_path":"…","tool_use_id":"toolu_…"}}'
)
API_RETRY = (
    '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":579,'
    '"error_status":500,"error":"server_error","session_id":"8bcc925a-…"}'
)
SYNTHETIC_ERROR = (
    '{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant",'
    '"model":"<synthetic>","content":[{"type":"text","text":"API Error: 500 server error"}]},'
    '"session_id":"8bcc925a-…"}'
)
RESULT_API_ERROR = (
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":500,'
    '"duration_ms":1400,"num_turns":1,"result":"API Error: 500 server error",'
    '"session_id":"8bcc925a-…","total_cost_usd":0,"usage":{"input_tokens":0,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}'
)
INTERRUPTED_USER = (
    '{"type":"user","message":{"role":"user","content":[{"type":"text",'
    '"text":"[Request interrupted by user]"}]},"session_id":"8bcc925a-…"}'
)
RESULT_NO_CONVERSATION = (
    '{"type":"result","subtype":"error_during_execution","is_error":true,"duration_ms":0,'
    '"num_turns":0,"session_id":"9f0e…","total_cost_usd":0,'
    '"errors":["No conversation found with session ID: 1234"]}'
)


def parse(line: str, stream: Stream = Stream.STDOUT) -> list[ChunkData]:
    return ClaudeStreamParser().parse(line, stream)


def stream_event(event: dict[str, object]) -> str:
    return json.dumps(
        {
            "type": "stream_event",
            "event": event,
            "session_id": SID,
            "parent_tool_use_id": None,
            "uuid": "…",
        }
    )


def test_init_is_a_system_chunk_with_model_and_session() -> None:
    assert parse(INIT) == [
        ChunkData(
            ChunkKind.SYSTEM,
            "init: model claude-opus-4-8[1m]",
            cli_session_id=SID,
            model="claude-opus-4-8[1m]",
        )
    ]


def test_assistant_text_block_is_a_full_text_chunk() -> None:
    [chunk] = parse(ASSISTANT_TEXT)
    assert chunk == ChunkData(
        ChunkKind.TEXT,
        "Hello from fake Anthropic! You said: say hello (turn 1)",
        partial=False,
        cli_session_id=SID,
    )


def test_result_carries_text_and_usage() -> None:
    [chunk] = parse(RESULT_SUCCESS)
    assert chunk.kind is ChunkKind.RESULT
    assert chunk.text == "Hello from fake Anthropic! You said: say hello (turn 1)"
    assert not chunk.is_error
    assert chunk.cli_session_id == SID
    assert chunk.usage == Usage(
        input_tokens=1668, output_tokens=21, cached_tokens=0, cost_usd=0.008865, duration_ms=182
    )


def test_cached_tokens_add_cache_reads_and_cache_creation() -> None:
    line = json.loads(RESULT_SUCCESS)
    line["usage"].update(cache_read_input_tokens=100, cache_creation_input_tokens=20)
    [chunk] = parse(json.dumps(line))
    assert chunk.usage is not None
    assert chunk.usage.cached_tokens == 120


def test_tool_use_block_names_the_tool_and_keeps_its_input() -> None:
    [chunk] = parse(TOOL_USE)
    assert chunk.kind is ChunkKind.TOOL_USE
    assert chunk.tool_name == "Bash"
    assert chunk.tool_input == {"command": "echo hi", "description": "Run a command"}
    assert chunk.text == "Bash: echo hi"
    assert chunk.cli_session_id is None


def test_tool_result_in_a_user_line() -> None:
    assert parse(TOOL_RESULT) == [
        ChunkData(ChunkKind.TOOL_RESULT, "hi", is_error=False, cli_session_id="…")
    ]


def test_tool_result_content_may_be_a_list_of_text_blocks() -> None:
    content = [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]
    block = {"type": "tool_result", "tool_use_id": "t1", "content": content, "is_error": True}
    line = json.dumps({"type": "user", "message": {"role": "user", "content": [block]}})
    assert parse(line) == [ChunkData(ChunkKind.TOOL_RESULT, "line one\nline two", is_error=True)]


def test_permission_request_from_can_use_tool() -> None:
    [chunk] = parse(CAN_USE_TOOL)
    assert chunk.kind is ChunkKind.PERMISSION_REQUEST
    assert chunk.tool_name == "Bash"
    assert chunk.tool_input == {"command": "touch x.txt && echo made"}
    assert "touch x.txt" in chunk.text


def test_api_error_is_a_result_with_is_error() -> None:
    retry, text, result = parse(API_RETRY), parse(SYNTHETIC_ERROR), parse(RESULT_API_ERROR)
    assert [c.kind for c in retry + text + result] == [
        ChunkKind.SYSTEM,
        ChunkKind.TEXT,
        ChunkKind.RESULT,
    ]
    assert "500" in retry[0].text
    assert result[0].is_error
    assert result[0].text == "API Error: 500 server error"


def test_interrupt_marker_is_a_system_chunk() -> None:
    assert parse(INTERRUPTED_USER) == [
        ChunkData(ChunkKind.SYSTEM, "[Request interrupted by user]", cli_session_id=SID)
    ]


def test_error_result_without_text_shows_the_errors() -> None:
    [chunk] = parse(RESULT_NO_CONVERSATION)
    assert chunk.kind is ChunkKind.RESULT
    assert chunk.is_error
    assert chunk.text == "No conversation found with session ID: 1234"


def test_text_and_thinking_deltas_are_partial() -> None:
    text = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hel"},
    }
    thinking = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"},
    }
    assert parse(stream_event(text)) == [
        ChunkData(ChunkKind.TEXT, "Hel", partial=True, cli_session_id=SID)
    ]
    assert parse(stream_event(thinking)) == [
        ChunkData(ChunkKind.THINKING, "hmm", partial=True, cli_session_id=SID)
    ]


def test_other_stream_events_yield_nothing() -> None:
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "m", "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"comm'},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    assert [parse(stream_event(e)) for e in events] == [[]] * len(events)


def test_a_line_that_is_not_json_is_raw() -> None:
    line = "Error: --dangerously-skip-permissions cannot be used with root/sudo privileges"
    assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_json_that_is_not_an_object_is_raw() -> None:
    for line in ("[1, 2]", "42", "null", '"text"'):
        assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_a_known_type_that_does_not_fit_the_schema_is_raw() -> None:
    line = '{"type":"result","result":["not","a","string"]}'
    assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_an_unknown_type_is_a_system_chunk_naming_it() -> None:
    line = '{"type":"prompt_suggestion","suggestion":"run the tests","session_id":"s1"}'
    assert parse(line) == [ChunkData(ChunkKind.SYSTEM, "prompt_suggestion", cli_session_id="s1")]


def test_a_control_response_is_a_system_chunk_naming_the_request() -> None:
    line = '{"type":"control_response","response":{"subtype":"success","request_id":"ctl-1"}}'
    assert parse(line) == [ChunkData(ChunkKind.SYSTEM, "control_response: success ctl-1")]


def test_a_failed_control_response_is_an_error() -> None:
    line = (
        '{"type":"control_response","response":{"subtype":"error","request_id":"ctl-2",'
        '"error":"no turn is running"}}'
    )
    assert parse(line) == [
        ChunkData(
            ChunkKind.ERROR, "control_response: error ctl-2: no turn is running", is_error=True
        )
    ]


def test_a_cancelled_control_request_is_a_system_chunk() -> None:
    line = '{"type":"control_cancel_request","request_id":"d985fe5a"}'
    assert parse(line) == [ChunkData(ChunkKind.SYSTEM, "control_cancel_request: d985fe5a")]


def test_the_plain_parser_cannot_answer_so_its_permission_requests_carry_no_id() -> None:
    [chunk] = parse(CAN_USE_TOOL)
    assert chunk.request_id is None


def test_stderr_lines_are_raw_even_when_they_are_json() -> None:
    assert parse(INIT, Stream.STDERR) == [ChunkData(ChunkKind.RAW, INIT)]


def test_tool_summary_is_one_short_line() -> None:
    summary = tool_summary("Bash", {"command": "echo one\necho two " + "x" * 500})
    assert "\n" not in summary
    assert summary.startswith("Bash: echo one echo two")
    assert len(summary) <= 160
    assert tool_summary("Write", None) == "Write"
    assert tool_summary("Fetch", {"n": 1}) == 'Fetch: {"n":1}'


# --------------------------------------------------------------------------- never raises

_TYPES = st.sampled_from(
    [
        "system",
        "stream_event",
        "assistant",
        "user",
        "result",
        "control_request",
        "control_response",
        "control_cancel_request",
        "other",
    ]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
_TEXT = st.one_of(st.text(), st.text(), st.text(), st.text(), st.none(), _JSON)
"""Mostly what the schema expects, sometimes anything at all."""
_NUMBER = st.one_of(st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 10.0), _JSON)
_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "thinking", "tool_use", "tool_result", "image", ""])},
    optional={
        "text": _TEXT,
        "thinking": _TEXT,
        "name": _TEXT,
        "input": _JSON,
        "content": _TEXT | st.lists(st.fixed_dictionaries({"type": _TEXT, "text": _TEXT})),
        "is_error": st.booleans() | st.booleans() | _JSON,
    },
)
_MESSAGE = st.fixed_dictionaries(
    {}, optional={"content": st.lists(_BLOCK, max_size=3) | _TEXT, "model": _TEXT}
)
_LINE = st.fixed_dictionaries(
    {"type": _TYPES},
    optional={
        "subtype": st.sampled_from(["init", "status", "api_retry", "success", "x"]) | _JSON,
        "session_id": _TEXT,
        "model": _TEXT,
        "message": _MESSAGE | _JSON,
        "event": st.fixed_dictionaries(
            {"type": st.sampled_from(["content_block_delta", "message_start"])},
            optional={
                "delta": st.fixed_dictionaries(
                    {"type": st.sampled_from(["text_delta", "thinking_delta", "x"])},
                    optional={"text": _TEXT, "thinking": _TEXT},
                )
            },
        )
        | _JSON,
        "request_id": _TEXT,
        "response": st.fixed_dictionaries(
            {}, optional={"subtype": _TEXT, "request_id": _TEXT, "error": _TEXT}
        )
        | _JSON,
        "request": st.fixed_dictionaries(
            {"subtype": st.sampled_from(["can_use_tool", "interrupt"])},
            optional={"tool_name": _TEXT, "input": _JSON},
        )
        | _JSON,
        "result": _TEXT,
        "errors": st.lists(_TEXT) | _JSON,
        "is_error": st.booleans() | _JSON,
        "usage": st.dictionaries(
            st.sampled_from(["input_tokens", "output_tokens", "cache_read_input_tokens"]), _NUMBER
        )
        | _JSON,
        "total_cost_usd": _NUMBER,
        "duration_ms": _NUMBER,
    },
)


def _is_chunk_list(chunks: object) -> bool:
    return isinstance(chunks, list) and all(isinstance(c, ChunkData) for c in chunks)


@given(st.text(), st.sampled_from(Stream))
def test_arbitrary_text_never_raises(line: str, stream: Stream) -> None:
    assert _is_chunk_list(ClaudeStreamParser().parse(line, stream))


@settings(max_examples=300)
@given(_LINE)
def test_arbitrary_json_lines_never_raise_and_are_never_dropped(obj: dict[str, object]) -> None:
    line = json.dumps(obj)
    chunks = ClaudeStreamParser().parse(line, Stream.STDOUT)
    assert _is_chunk_list(chunks)
    if obj["type"] not in ("stream_event", "assistant", "user"):
        assert chunks, line


def test_deeply_nested_json_is_raw_not_a_crash() -> None:
    line = '{"type":"assistant","message":' + "[" * 100_000 + "]" * 100_000 + "}"
    assert parse(line) == [ChunkData(ChunkKind.RAW, line)]


def test_lone_surrogates_do_not_break_parsing() -> None:
    chunks = parse('{"type":"system","subtype":"init","model":"m\udcff"}')
    assert [c.kind for c in chunks] == [ChunkKind.SYSTEM]
