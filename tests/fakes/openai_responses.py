"""A fake OpenAI Responses API for Codex CLI (``wire_api = "responses"``).

Answers ``POST /v1/responses`` (streamed or not) and ``GET /v1/models``.
Shell tool: the ``exec_command`` function with arguments ``{"cmd": ...}``.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import ClassVar

from .billing import Bill, Ledger
from .server import (
    JSON,
    SLOW_DELAY_S,
    Conversation,
    Events,
    Exchange,
    FakeServer,
    Message,
    RecordedRequest,
    TextReply,
    ToolReply,
    estimate_tokens,
    new_id,
    prompt_text,
    sse,
)

MODEL_FALLBACK = "gpt-5.5"
_OUTPUT_MARKER = "\nOutput:\n"


class FakeOpenAIResponses(FakeServer):
    """Fake ``api.openai.com`` speaking the Responses API with SSE streaming."""

    vendor: ClassVar[str] = "OpenAI"
    shell_tool: ClassVar[str] = "exec_command"

    def __init__(self, slow_delay: float = SLOW_DELAY_S) -> None:
        super().__init__(slow_delay)
        self.ledger = Ledger()
        """The usage of every response completed, as ``response.completed`` reported it."""

    # -- routing

    def route(self, exchange: Exchange) -> None:
        request = exchange.request
        match (request.method, request.path):
            case ("POST", "/v1/responses"):
                self.answer(exchange, stream=bool((request.body or {}).get("stream")))
            case ("GET", "/v1/models"):
                exchange.send_json(_models_page())
            case ("HEAD", _):
                exchange.send_empty()
            case _:
                exchange.send_json(
                    self._error("invalid_request_error", f"no route {request.path}"), 404
                )

    def is_model_call(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/v1/responses"

    # -- understanding the request

    def conversation(self, request: RecordedRequest) -> Conversation:
        body = request.body or {}
        items = body.get("input", [])
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        messages = [m for item in items if (m := _message_of(item)) is not None]
        return Conversation(
            messages=tuple(messages),
            tools=frozenset(t.get("name") or t.get("type", "") for t in body.get("tools", [])),
            json_schema=_requested_schema(body),
        )

    # -- answering

    def stream_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> Events:
        numbers = itertools.count()
        response = _response_object(request, "in_progress", [], None)
        yield _event(numbers, "response.created", response=response)
        yield _event(numbers, "response.in_progress", response=response)
        output = [_message_item(reply)]
        yield from _message_events(numbers, output[0], reply)
        if isinstance(reply, ToolReply):
            output.append(_function_call_item(reply))
            yield from _function_call_events(numbers, output[1])
        done = _response_object(request, "completed", output, self._bill(request, reply))
        yield _event(numbers, "response.completed", response=done)

    def json_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> JSON:
        output = [_message_item(reply)]
        if isinstance(reply, ToolReply):
            output.append(_function_call_item(reply))
        return _response_object(request, "completed", output, self._bill(request, reply))

    def _bill(self, request: RecordedRequest, reply: TextReply | ToolReply) -> JSON:
        """The response's ``usage``, recorded in the ledger as it is sent."""
        usage = _usage(request, reply)
        self.ledger.record(Bill(usage["input_tokens"], usage["output_tokens"]))
        return usage

    def error_payload(self, status: int) -> JSON:
        return self._error("server_error", f"Fake OpenAI: HTTP {status} on request (FAIL500)")

    @staticmethod
    def _error(kind: str, message: str) -> JSON:
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# --------------------------------------------------------------------------- request parsing


def _message_of(item: JSON) -> Message | None:
    """The message for one ``input[]`` item (developer/system messages and reasoning: none)."""
    match item.get("type", "message"):
        case "message":
            return _chat_message(item)
        case "function_call":
            return Message("tool_call", _call_command(item.get("arguments", "")))
        case "custom_tool_call":
            return Message("tool_call", str(item.get("input", "")))
        case "function_call_output" | "custom_tool_call_output":
            return Message("tool_result", _command_output(_output_text(item.get("output", ""))))
        case _:
            return None


def _chat_message(item: JSON) -> Message | None:
    """A user prompt or an assistant text; context-only user messages yield none."""
    content = item.get("content", "")
    parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
    if item.get("role") == "assistant":
        return Message("assistant", "".join(parts))
    if item.get("role") == "user":
        prompt = prompt_text(parts)
        return Message("user", prompt) if prompt else None
    return None


def _call_command(arguments: str) -> str:
    """The shell command of an ``exec_command`` call (the raw arguments for other tools)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return str(parsed.get("cmd", arguments)) if isinstance(parsed, dict) else arguments


def _output_text(output: JSON) -> str:
    """The text of a function-call output (a string or a list of content parts)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return json.dumps(output)


def _command_output(text: str) -> str:
    """Strip Codex's ``Chunk ID … Output:`` preamble from an ``exec_command`` result."""
    head, marker, tail = text.partition(_OUTPUT_MARKER)
    return tail.strip("\n") if marker else head


def _requested_schema(body: JSON) -> JSON | None:
    """The JSON schema of a structured-output request (``text.format``), if any."""
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return fmt.get("schema", {})
    return None


# --------------------------------------------------------------------------- response building


def _event(
    numbers: itertools.count[int], kind: str, delay: float = 0.0, **fields: JSON
) -> tuple[bytes, float]:
    """One Responses SSE event with its ``type`` and ``sequence_number``."""
    return sse(kind, {"type": kind, "sequence_number": next(numbers), **fields}, delay)


def _response_object(
    request: RecordedRequest, status: str, output: list[JSON], usage: JSON
) -> JSON:
    body = request.body or {}
    return {
        "id": _response_id(request),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", MODEL_FALLBACK),
        "output": output,
        "parallel_tool_calls": bool(body.get("parallel_tool_calls")),
        "usage": usage,
    }


def _response_id(request: RecordedRequest) -> str:
    """A stable per-request response id (the same in every event of one stream)."""
    return f"resp_fake_{id(request):x}"


def _message_item(reply: TextReply | ToolReply) -> JSON:
    return {
        "id": new_id("msg_fake_"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
    }


def _function_call_item(reply: ToolReply) -> JSON:
    return {
        "id": new_id("fc_fake_"),
        "type": "function_call",
        "status": "completed",
        "call_id": new_id("call_fake_"),
        "name": "exec_command",
        "arguments": json.dumps({"cmd": reply.command}),
    }


def _message_events(
    numbers: itertools.count[int], item: JSON, reply: TextReply | ToolReply
) -> Events:
    """A streamed assistant message: item and part added, text deltas, part and item done."""
    ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": []}
    yield _event(
        numbers,
        "response.output_item.added",
        output_index=0,
        item={**item, "status": "in_progress", "content": []},
    )
    yield _event(numbers, "response.content_part.added", part=empty_part, **ids)
    for piece in reply.pieces():
        yield _event(numbers, "response.output_text.delta", reply.delay, delta=piece, **ids)
    yield _event(numbers, "response.output_text.done", text=reply.text, **ids)
    yield _event(numbers, "response.content_part.done", part=item["content"][0], **ids)
    yield _event(numbers, "response.output_item.done", output_index=0, item=item)


def _function_call_events(numbers: itertools.count[int], item: JSON) -> Events:
    """A streamed function call: item added, argument deltas, arguments done, item done."""
    arguments = item["arguments"]
    half = len(arguments) // 2
    ids = {"item_id": item["id"], "output_index": 1}
    yield _event(
        numbers,
        "response.output_item.added",
        output_index=1,
        item={**item, "status": "in_progress", "arguments": ""},
    )
    for part in (arguments[:half], arguments[half:]):
        yield _event(numbers, "response.function_call_arguments.delta", delta=part, **ids)
    yield _event(numbers, "response.function_call_arguments.done", arguments=arguments, **ids)
    yield _event(numbers, "response.output_item.done", output_index=1, item=item)


def _usage(request: RecordedRequest, reply: TextReply | ToolReply) -> JSON:
    prompt, completion = estimate_tokens(request.raw_body.decode()), reply.output_tokens()
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _models_page() -> JSON:
    return {
        "object": "list",
        "data": [{"id": MODEL_FALLBACK, "object": "model", "created": 0, "owned_by": "fake"}],
    }
