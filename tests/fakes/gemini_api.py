"""A fake Gemini API (Generative Language, v1beta) for Gemini CLI (``GOOGLE_GEMINI_BASE_URL``).

Answers ``models/<m>:streamGenerateContent`` (SSE), ``:generateContent`` (also the router and
other JSON-schema calls, whose schema is filled), ``:countTokens`` and ``GET /v1beta/models``.
Shell tool: the ``run_shell_command`` function with arguments ``{"command": ...}``.
"""

from __future__ import annotations

import re
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

MODEL_FALLBACK = "gemini-2.5-flash"
_MODEL_CALL = re.compile(r"^/v1\w*/models/(?P<model>[^:/]+):(?P<method>\w+)$")
_SHELL_OUTPUT = re.compile(
    r"^Output: ?(?P<output>.*?)(?:\n(?:Error|Exit Code|Signal|Background PIDs|"
    r"Process Group PGID):.*)?$",
    re.DOTALL,
)
_UNTRUSTED = re.compile(
    r"^\s*<untrusted_context>\n?(?P<inner>.*?)\n?</untrusted_context>\s*$", re.DOTALL
)


class FakeGemini(FakeServer):
    """Fake ``generativelanguage.googleapis.com`` with SSE streaming."""

    vendor: ClassVar[str] = "Gemini"
    shell_tool: ClassVar[str] = "run_shell_command"

    def __init__(self, slow_delay: float = SLOW_DELAY_S) -> None:
        super().__init__(slow_delay)
        self.ledger = Ledger()
        """The usage of every response finished, as its last chunk's ``usageMetadata`` said."""

    # -- routing

    def route(self, exchange: Exchange) -> None:
        request = exchange.request
        match _model_method(request):
            case "streamGenerateContent":
                self.answer(exchange, stream=True)
            case "generateContent":
                self.answer(exchange, stream=False)
            case "countTokens":
                exchange.send_json({"totalTokens": estimate_tokens(request.raw_body.decode())})
            case _ if request.method == "GET" and request.path.endswith("/models"):
                exchange.send_json({"models": [{"name": f"models/{MODEL_FALLBACK}"}]})
            case _ if request.method == "HEAD":
                exchange.send_empty()
            case _:
                exchange.send_json(self._error(404, f"no route {request.path}"), 404)

    def is_model_call(self, request: RecordedRequest) -> bool:
        return _model_method(request) in ("streamGenerateContent", "generateContent")

    # -- understanding the request

    def conversation(self, request: RecordedRequest) -> Conversation:
        body = request.body or {}
        messages: list[Message] = []
        for content in body.get("contents", []):
            messages.extend(_messages_of(content))
        declarations = [
            d for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])
        ]
        return Conversation(
            messages=tuple(messages),
            tools=frozenset(d.get("name", "") for d in declarations),
            json_schema=_requested_schema(body),
        )

    # -- answering

    def stream_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> Events:
        response_id = new_id("")
        pieces = reply.pieces()
        for piece in pieces[:-1]:
            yield sse(None, _chunk(request, response_id, [{"text": piece}], None), reply.delay)
        if isinstance(reply, TextReply):
            last = _chunk(request, response_id, [{"text": pieces[-1]}], reply)
            yield sse(None, self._billed(last), reply.delay)
            return
        yield sse(None, _chunk(request, response_id, [{"text": pieces[-1]}], None))
        last = _chunk(request, response_id, [_function_call_part(reply)], reply)
        yield sse(None, self._billed(last))

    def json_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> JSON:
        parts: list[JSON] = [{"text": reply.text}]
        if isinstance(reply, ToolReply):
            parts.append(_function_call_part(reply))
        return self._billed(_chunk(request, new_id(""), parts, reply))

    def _billed(self, final: JSON) -> JSON:
        """A response's final chunk, its usage recorded in the ledger as it is sent."""
        usage = final["usageMetadata"]
        self.ledger.record(Bill(usage["promptTokenCount"], usage["candidatesTokenCount"]))
        return final

    def error_payload(self, status: int) -> JSON:
        return self._error(status, f"Fake Gemini: HTTP {status} on request (FAIL500)")

    @staticmethod
    def _error(status: int, message: str) -> JSON:
        names = {404: "NOT_FOUND", 500: "INTERNAL", 503: "UNAVAILABLE"}
        return {
            "error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}
        }


# --------------------------------------------------------------------------- request parsing


def _model_method(request: RecordedRequest) -> str | None:
    """The method of a ``POST /v1beta/models/<model>:<method>`` call, else None."""
    call = _MODEL_CALL.match(request.path)
    return call["method"] if call and request.method == "POST" else None


def _messages_of(content: JSON) -> list[Message]:
    """The messages of one ``contents[]`` entry (thought parts are skipped)."""
    parts = [p for p in content.get("parts", []) if not p.get("thought")]
    if content.get("role") == "model":
        return [m for p in parts if (m := _model_part(p)) is not None]
    results = [
        Message("tool_result", _function_output(p["functionResponse"]))
        for p in parts
        if "functionResponse" in p
    ]
    prompt = prompt_text([p["text"] for p in parts if "text" in p])
    return results + ([Message("user", prompt)] if prompt else [])


def _model_part(part: JSON) -> Message | None:
    """The message for one model part: text or a function call."""
    if "text" in part:
        return Message("assistant", part["text"])
    if "functionCall" in part:
        args = part["functionCall"].get("args", {})
        return Message("tool_call", str(args.get("command", args)))
    return None


def _function_output(response: JSON) -> str:
    """The command output inside a ``functionResponse`` (unwrapping Gemini's decorations)."""
    payload = response.get("response", {})
    text = str(payload.get("output", payload.get("error", payload)))
    untrusted = _UNTRUSTED.match(text)
    inner = untrusted["inner"] if untrusted else text
    shell = _SHELL_OUTPUT.match(inner)
    return shell["output"] if shell else inner


def _requested_schema(body: JSON) -> JSON | None:
    """The response schema of a structured-output (``application/json``) request, if any."""
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema is None and config.get("responseMimeType") == "application/json":
        return {"type": "object"}
    return schema


# --------------------------------------------------------------------------- response building


def _function_call_part(reply: ToolReply) -> JSON:
    return {
        "functionCall": {
            "name": "run_shell_command",
            "args": {"command": reply.command, "description": "Run a command"},
        }
    }


def _chunk(
    request: RecordedRequest,
    response_id: str,
    parts: list[JSON],
    final: TextReply | ToolReply | None,
) -> JSON:
    """One ``GenerateContentResponse``; the ``final`` one carries finishReason and full usage."""
    candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
    prompt_tokens = estimate_tokens(request.raw_body.decode())
    usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    if final is not None:
        candidate["finishReason"] = "STOP"
        output = final.output_tokens()
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt_tokens + output,
        }
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": _model(request),
        "responseId": response_id,
    }


def _model(request: RecordedRequest) -> str:
    call = _MODEL_CALL.match(request.path)
    return call["model"] if call else MODEL_FALLBACK
