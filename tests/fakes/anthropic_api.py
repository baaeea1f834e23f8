"""A fake Anthropic Messages API for Claude Code (``ANTHROPIC_BASE_URL``).

Answers ``POST /v1/messages`` (streamed or not), ``POST /v1/messages/count_tokens``,
``GET /v1/models`` and the ``HEAD /`` connectivity preflight. Shell tool: ``Bash``.

Every message it answers is billed like the real API: the usage it reports (input tokens
in ``message_start``, output tokens in the final ``message_delta``) is recorded in
:attr:`FakeAnthropic.ledger`; :func:`price_usd` is what Claude Code charges for it.
"""

from __future__ import annotations

import json
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

MODEL_FALLBACK = "claude-opus-4-8"
OPUS_USD_PER_MTOK = (5.0, 25.0)
"""What Claude Code 2.1.197 charges for its default model (``claude-opus-4-8``), input and
output per million tokens (measured: 1668 in + 21 out gave ``total_cost_usd`` 0.008865)."""


def price_usd(bill: Bill) -> float:
    """What Claude Code computes as the cost of one bill of its default model."""
    per_input, per_output = OPUS_USD_PER_MTOK
    return (bill.input_tokens * per_input + bill.output_tokens * per_output) / 1e6


class FakeAnthropic(FakeServer):
    """Fake ``api.anthropic.com`` speaking the Messages API with SSE streaming."""

    vendor: ClassVar[str] = "Anthropic"
    shell_tool: ClassVar[str] = "Bash"

    def __init__(self, slow_delay: float = SLOW_DELAY_S, *, insist_on_bash: bool = False) -> None:
        super().__init__(slow_delay)
        self.ledger = Ledger()
        """The usage of every message answered, as its response reported it."""
        self.insist_on_bash = insist_on_bash
        """Answer ``RUN_TOOL`` with a ``Bash`` call even when the request did not offer
        Bash: a model that calls a tool it was not given (the CLI must still refuse it)."""

    # -- routing

    def route(self, exchange: Exchange) -> None:
        request = exchange.request
        match (request.method, request.path):
            case ("HEAD", _):
                exchange.send_empty()
            case ("POST", "/v1/messages"):
                self.answer(exchange, stream=bool((request.body or {}).get("stream")))
            case ("POST", "/v1/messages/count_tokens"):
                exchange.send_json({"input_tokens": estimate_tokens(request.raw_body.decode())})
            case ("GET", "/v1/models"):
                exchange.send_json(_models_page())
            case _:
                exchange.send_json(_error("not_found_error", f"no route {request.path}"), 404)

    def is_model_call(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/v1/messages"

    # -- understanding the request

    def conversation(self, request: RecordedRequest) -> Conversation:
        body = request.body or {}
        messages: list[Message] = []
        for entry in body.get("messages", []):
            messages.extend(_messages_of(entry))
        return Conversation(
            messages=tuple(messages),
            tools=frozenset(t.get("name", "") for t in body.get("tools", []))
            | ({"Bash"} if self.insist_on_bash else set()),
            json_schema=_requested_schema(body),
        )

    # -- answering

    def stream_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> Events:
        model = _model(request)
        usage = _usage(request, reply)
        start: JSON = {
            "id": new_id("msg_fake_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        yield sse("message_start", {"type": "message_start", "message": start})
        yield sse("ping", {"type": "ping"})
        yield from _text_block_events(0, reply)
        if isinstance(reply, ToolReply):
            yield from _tool_block_events(1, reply)
        self._bill(usage)  # before the CLI can see the final usage (and its result line)
        yield sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        yield sse("message_stop", {"type": "message_stop"})

    def json_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> JSON:
        content: list[JSON] = []
        if isinstance(reply, TextReply):
            content.append({"type": "text", "text": reply.text})
        else:
            content += [{"type": "text", "text": reply.text}, _tool_use_block(reply)]
        return {
            "id": new_id("msg_fake_"),
            "type": "message",
            "role": "assistant",
            "model": _model(request),
            "content": content,
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": self._bill(_usage(request, reply)),
        }

    def _bill(self, usage: dict[str, int]) -> dict[str, int]:
        """Record what ``usage`` bills; returns it."""
        cached = usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
        self.ledger.record(Bill(usage["input_tokens"], usage["output_tokens"], cached))
        return usage

    def error_payload(self, status: int) -> JSON:
        return _error("api_error", f"Fake Anthropic: HTTP {status} on request (FAIL500)")


# --------------------------------------------------------------------------- request parsing


def _messages_of(entry: JSON) -> list[Message]:
    """The messages of one ``messages[]`` entry (``role: system`` entries yield none)."""
    role = entry.get("role")
    content = entry.get("content", "")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if role == "assistant":
        return [m for b in blocks if (m := _assistant_block(b)) is not None]
    if role != "user":
        return []
    results = [
        Message("tool_result", _block_text(b.get("content", "")))
        for b in blocks
        if b.get("type") == "tool_result"
    ]
    prompt = prompt_text([b.get("text", "") for b in blocks if b.get("type") == "text"])
    return results + ([Message("user", prompt)] if prompt else [])


def _assistant_block(block: JSON) -> Message | None:
    """The message for one assistant content block (thinking blocks yield none)."""
    if block.get("type") == "text":
        return Message("assistant", block.get("text", ""))
    if block.get("type") == "tool_use":
        tool_input = block.get("input", {})
        return Message("tool_call", str(tool_input.get("command", json.dumps(tool_input))))
    return None


def _block_text(content: JSON) -> str:
    """The text of a ``tool_result`` content (a string or a list of text blocks)."""
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")


def _requested_schema(body: JSON) -> JSON | None:
    """The JSON schema of a structured-output request, if any."""
    for fmt in (body.get("output_format"), (body.get("output_config") or {}).get("format")):
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema", {})
    return None


# --------------------------------------------------------------------------- response building


def _model(request: RecordedRequest) -> str:
    return str((request.body or {}).get("model", MODEL_FALLBACK))


def _usage(request: RecordedRequest, reply: TextReply | ToolReply) -> dict[str, int]:
    return {
        "input_tokens": estimate_tokens(request.raw_body.decode()),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": reply.output_tokens(),
    }


def _stop_reason(reply: TextReply | ToolReply) -> str:
    return "tool_use" if isinstance(reply, ToolReply) else "end_turn"


def _tool_use_block(reply: ToolReply) -> JSON:
    return {
        "type": "tool_use",
        "id": new_id("toolu_fake_"),
        "name": "Bash",
        "input": {"command": reply.command, "description": "Run a command"},
    }


def _text_block_events(index: int, reply: TextReply | ToolReply) -> Events:
    """A streamed text content block: start, one delta per piece, stop."""
    yield sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
    )
    for piece in reply.pieces():
        yield sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            },
            reply.delay,
        )
    yield sse("content_block_stop", {"type": "content_block_stop", "index": index})


def _tool_block_events(index: int, reply: ToolReply) -> Events:
    """A streamed ``tool_use`` block whose input JSON arrives in two partial deltas."""
    block = _tool_use_block(reply)
    arguments = json.dumps(block["input"])
    half = len(arguments) // 2
    yield sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
    )
    for part in (arguments[:half], arguments[half:]):
        yield sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part},
            },
        )
    yield sse("content_block_stop", {"type": "content_block_stop", "index": index})


def _models_page() -> JSON:
    model = {
        "type": "model",
        "id": MODEL_FALLBACK,
        "display_name": "Claude (fake)",
        "created_at": "2026-01-01T00:00:00Z",
    }
    return {
        "data": [model],
        "has_more": False,
        "first_id": MODEL_FALLBACK,
        "last_id": MODEL_FALLBACK,
    }


def _error(kind: str, message: str) -> JSON:
    return {"type": "error", "error": {"type": kind, "message": message}}
