"""Claude Code's ``--output-format stream-json`` dialect, read line by line into chunks.

Each stdout line is one JSON object tagged by ``type``: ``system``, ``stream_event`` (raw
Anthropic SSE events, with ``--include-partial-messages``), ``assistant`` and ``user``
(one content block per line), ``result``, and the control protocol's ``control_request``,
``control_response`` and ``control_cancel_request``. The parser never raises
and never drops a line: text that is not a JSON object, or an object that does not fit the
schema, becomes a ``raw`` chunk; an object of a type it does not know becomes a ``system``
chunk naming the type.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec

from agentplex.plugins.api import ChunkData, Driver
from agentplex.plugins.json_lines import decode_line
from agentplex.protocol import ChunkKind, Stream, Usage, UsageScope

SUMMARY_CHARS = 160
"""Longest one-line summary of a tool call."""
_SUMMARY_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")


# --------------------------------------------------------------------------- schema


class _Block(msgspec.Struct, frozen=True):
    """A message content block; which fields are set depends on ``type``."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    name: str | None = None
    input: Any = None
    content: Any = None
    is_error: bool | None = None


class _Message(msgspec.Struct, frozen=True):
    content: str | list[_Block] = ""
    model: str | None = None


class _Delta(msgspec.Struct, frozen=True):
    type: str = ""
    text: str | None = None
    thinking: str | None = None


class _Event(msgspec.Struct, frozen=True):
    type: str = ""
    delta: _Delta | None = None


class _Line(msgspec.Struct, frozen=True, tag_field="type"):
    session_id: str | None = None


class _System(_Line, frozen=True, tag="system"):
    subtype: str = ""
    model: str | None = None
    status: str | None = None
    attempt: int | None = None
    max_retries: int | None = None
    error_status: int | None = None
    error: str | None = None


class _StreamEvent(_Line, frozen=True, tag="stream_event"):
    event: _Event = _Event()


class _Assistant(_Line, frozen=True, tag="assistant"):
    message: _Message = _Message()


class _User(_Line, frozen=True, tag="user"):
    message: _Message = _Message()


class _ResultUsage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class _ModelUsage(msgspec.Struct, frozen=True, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class _Result(_Line, frozen=True, tag="result"):
    subtype: str = ""
    is_error: bool | None = None
    result: str | None = None
    errors: list[Any] = []
    usage: _ResultUsage | None = None
    """The turn's tokens (all its API calls)."""
    total_cost_usd: float | None = None
    """Claude Code: the process's running cost (in turn mode, a process is one turn)."""
    model_usage: dict[str, _ModelUsage] | None = msgspec.field(default=None, name="modelUsage")
    """Claude Code: the process's running tokens and cost, by model."""
    duration_ms: float | None = None


class _ControlBody(msgspec.Struct, frozen=True):
    subtype: str = ""
    tool_name: str | None = None
    input: Any = None


class _ControlRequest(_Line, frozen=True, tag="control_request"):
    request_id: str | None = None
    request: _ControlBody = _ControlBody()


class _ControlResponseBody(msgspec.Struct, frozen=True):
    subtype: str = ""
    request_id: str | None = None
    error: str | None = None


class _ControlResponse(_Line, frozen=True, tag="control_response"):
    response: _ControlResponseBody = _ControlResponseBody()


class _ControlCancel(_Line, frozen=True, tag="control_cancel_request"):
    request_id: str | None = None


_Data = _System | _StreamEvent | _Assistant | _User | _Result | _ControlRequest | _ControlResponse
"""Lines whose chunks need nothing from the driver."""
_Known = _Data | _ControlCancel
_decode_known = msgspec.json.Decoder(_Known).decode


# --------------------------------------------------------------------------- parser


class ClaudeStreamParser(Driver):
    """A driver for Claude Code's stream-json dialect (and the demo agent's).

    Reads stream-json lines into chunks; writes a message to a long-lived process as a
    stream-json ``user`` line. It answers no control requests: a ``can_use_tool`` request
    becomes a ``permission_request`` chunk without a ``request_id``. A subclass that speaks
    the control protocol overrides :meth:`permission_request` and :meth:`request_cancelled`.

    ``usage_scope`` says what a result's figures count. Claude Code (2.1.197, measured
    against the fake) reports ``total_cost_usd`` and ``modelUsage`` as running totals of
    the process and ``usage`` as the turn's tokens: with scope ``process`` a result carries
    the running figures (tokens from ``modelUsage``; a CLI without it has its turns' tokens
    added up here), which the daemon turns into the turn's own. The demo agent reports
    each turn's figures: scope ``turn``, its ``usage`` as it is.
    """

    def __init__(self, usage_scope: UsageScope = UsageScope.TURN) -> None:
        self.usage_scope = usage_scope
        self._tokens = Usage()
        """The tokens of this process's results so far, for results without ``modelUsage``."""

    def encode_input(self, message: str) -> bytes:
        line = {"type": "user", "message": {"role": "user", "content": message}}
        return msgspec.json.encode(line) + b"\n"

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        known = decode_line(line, stream, _decode_known, _KNOWN_TYPES)
        if isinstance(known, list):
            return known
        chunks = self._chunks(known)
        if known.session_id is None:
            return chunks
        return [msgspec.structs.replace(c, cli_session_id=known.session_id) for c in chunks]

    def permission_request(
        self, request_id: str | None, tool_name: str, tool_input: Any
    ) -> ChunkData:
        """The chunk for the CLI's ``can_use_tool`` request ``request_id`` (None if absent)."""
        return permission_chunk(tool_name, tool_input)

    def request_cancelled(self, request_id: str | None) -> ChunkData:
        """The chunk for ``control_cancel_request``: the CLI withdrew one of its requests."""
        return ChunkData(ChunkKind.SYSTEM, f"control_cancel_request: {request_id or '?'}")

    def _chunks(self, line: _Known) -> list[ChunkData]:
        if isinstance(line, _ControlCancel):
            return [self.request_cancelled(line.request_id)]
        if isinstance(line, _ControlRequest) and line.request.subtype == "can_use_tool":
            name = line.request.tool_name or "?"
            return [self.permission_request(line.request_id, name, line.request.input)]
        if isinstance(line, _Result):
            return [_result_chunk(line, self._result_usage(line))]
        return _data_chunks(line)

    def _result_usage(self, line: _Result) -> Usage:
        """A result's figures, in :attr:`usage_scope`."""
        usage = _usage(line)
        if self.usage_scope is UsageScope.TURN:
            return usage
        if line.model_usage is None:
            self._tokens = _add_tokens(self._tokens, usage)
            tokens = self._tokens
        else:
            tokens = _model_tokens(line.model_usage)
        return msgspec.structs.replace(
            usage,
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cached_tokens=tokens.cached_tokens,
            scope=self.usage_scope,
        )


def _data_chunks(line: _Data) -> list[ChunkData]:
    match line:
        case _System():
            return [ChunkData(ChunkKind.SYSTEM, _system_text(line), model=line.model)]
        case _StreamEvent(event=_Event(type="content_block_delta", delta=_Delta() as delta)):
            return _delta_chunks(delta)
        case _StreamEvent():
            return []
        case _Assistant(message=message):
            return [_assistant_chunk(block) for block in _blocks(message)]
        case _User(message=message):
            return [_user_chunk(block) for block in _blocks(message)]
        case _Result():
            return [_result_chunk(line, _usage(line))]
        case _ControlRequest(request=request):
            return [ChunkData(ChunkKind.SYSTEM, f"control_request: {request.subtype or '?'}")]
        case _ControlResponse(response=response):
            return [_control_response_chunk(response)]


_KNOWN_TYPES = frozenset(t.__struct_config__.tag for t in typing.get_args(_Known))


def _system_text(line: _System) -> str:
    match line.subtype:
        case "init":
            return f"init: model {line.model}"
        case "status":
            return f"status: {line.status}"
        case "api_retry":
            return (
                f"api_retry: attempt {line.attempt}/{line.max_retries} after "
                f"{line.error_status} {line.error}"
            )
        case subtype:
            return subtype or "system"


def _delta_chunks(delta: _Delta) -> list[ChunkData]:
    if delta.type == "text_delta" and delta.text is not None:
        return [ChunkData(ChunkKind.TEXT, delta.text, partial=True)]
    if delta.type == "thinking_delta" and delta.thinking is not None:
        return [ChunkData(ChunkKind.THINKING, delta.thinking, partial=True)]
    return []


def _blocks(message: _Message) -> list[_Block]:
    if isinstance(message.content, str):
        return [_Block(type="text", text=message.content)]
    return message.content


def _assistant_chunk(block: _Block) -> ChunkData:
    match block.type:
        case "text":
            return ChunkData(ChunkKind.TEXT, block.text or "")
        case "thinking":
            return ChunkData(ChunkKind.THINKING, block.thinking or "")
        case "redacted_thinking":
            return ChunkData(ChunkKind.THINKING, "[redacted thinking]")
        case "tool_use" | "server_tool_use":
            name = block.name or "?"
            return ChunkData(
                ChunkKind.TOOL_USE,
                tool_summary(name, block.input),
                tool_name=name,
                tool_input=block.input,
            )
        case other:
            return ChunkData(ChunkKind.SYSTEM, f"assistant {other or 'untyped'} block")


def _user_chunk(block: _Block) -> ChunkData:
    if block.type == "tool_result":
        return ChunkData(
            ChunkKind.TOOL_RESULT, _content_text(block.content), is_error=bool(block.is_error)
        )
    if block.type == "text":
        return ChunkData(ChunkKind.SYSTEM, block.text or "")
    return ChunkData(ChunkKind.SYSTEM, f"user {block.type or 'untyped'} block")


def _content_text(content: Any) -> str:
    """The text of a tool result: a string, or a list of blocks whose text is joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else _compact(content)
    parts = [_block_text(block) for block in content]
    return "\n".join(part for part in parts if part)


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return _compact(block)
    text = block.get("text")
    if block.get("type") == "text" and isinstance(text, str):
        return text
    return f"[{block.get('type', 'block')}]"


def _result_chunk(line: _Result, usage: Usage) -> ChunkData:
    is_error = bool(line.is_error) or line.subtype.startswith("error")
    errors = "\n".join(e if isinstance(e, str) else _compact(e) for e in line.errors)
    text = line.result or errors or (line.subtype if is_error else "")
    return ChunkData(ChunkKind.RESULT, text, is_error=is_error, usage=usage)


def _usage(line: _Result) -> Usage:
    usage = line.usage or _ResultUsage()
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
        cost_usd=line.total_cost_usd or 0.0,
        duration_ms=None if line.duration_ms is None else int(line.duration_ms),
    )


def _model_tokens(by_model: dict[str, _ModelUsage]) -> Usage:
    """The tokens of every model, added up."""
    figures = by_model.values()
    cached = (m.cache_read_input_tokens + m.cache_creation_input_tokens for m in figures)
    return Usage(
        input_tokens=sum(m.input_tokens for m in figures),
        output_tokens=sum(m.output_tokens for m in figures),
        cached_tokens=sum(cached),
    )


def _add_tokens(total: Usage, turn: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + turn.input_tokens,
        output_tokens=total.output_tokens + turn.output_tokens,
        cached_tokens=total.cached_tokens + turn.cached_tokens,
    )


def _control_response_chunk(response: _ControlResponseBody) -> ChunkData:
    """The CLI's answer to one of our control requests (an interrupt, say)."""
    text = f"control_response: {response.subtype or '?'} {response.request_id or '?'}"
    if response.error:
        return ChunkData(ChunkKind.ERROR, f"{text}: {response.error}", is_error=True)
    return ChunkData(ChunkKind.SYSTEM, text)


def permission_chunk(
    tool_name: str, tool_input: Any, note: str = "", request_id: str | None = None
) -> ChunkData:
    """A ``permission_request`` chunk: ``permission: <tool summary>`` plus ``note``."""
    text = f"permission: {tool_summary(tool_name, tool_input)}{note}"
    return ChunkData(
        ChunkKind.PERMISSION_REQUEST,
        text,
        tool_name=tool_name,
        tool_input=tool_input,
        request_id=request_id,
    )


def tool_summary(name: str, tool_input: Any) -> str:
    """One line saying what a tool call does, such as ``Bash: echo hi``."""
    detail = _compact(tool_input) if tool_input is not None else ""
    if isinstance(tool_input, dict):
        key = next((k for k in _SUMMARY_KEYS if isinstance(tool_input.get(k), str)), None)
        detail = tool_input[key] if key else detail
    line = " ".join(f"{name}: {detail}".split()) if detail else name
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def _compact(value: Any) -> str:
    """A decoded JSON value as compact JSON text."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except RecursionError:
        return "[nested too deeply to show]"
