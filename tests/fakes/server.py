"""Shared machinery of the fake model-API servers.

A fake is a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) served from a daemon thread and used
as a context manager. It records every request, turns the request body into a vendor-neutral
:class:`Conversation`, decides what the model "says" from magic words in the last user prompt
(:func:`decide`) and lets the vendor subclass render that :class:`Reply` on the wire.

Magic words (in the last real user prompt):

* ``RUN_TOOL <shell command>``: answer with a shell tool call; once the tool result comes
  back, answer ``Tool said: <output>``.
* ``SLOW``: stream the reply in 40 deltas, 0.1 s apart.
* ``FAIL500``: answer HTTP 500.
* ``HANG``: read the request and never answer (until the server shuts down).
* ``DIGEST``: answer ``Prompt of N characters, sha256 <hex>`` about the whole prompt (its
  UTF-8 bytes), so a test can check that a prompt of any size arrived intact.
* anything else: ``Hello from fake <vendor>! You said: <prompt> (turn N)``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

JSON = Any
Role = Literal["user", "assistant", "tool_call", "tool_result"]
Events = Iterable[tuple[bytes, float]]

SLOW_DELTAS = 40
SLOW_DELAY_S = 0.1
DEFAULT_DELTAS = 4

_CONTEXT_BLOCK = re.compile(r"^\s*<[A-Za-z][\w-]*[ >]")
_INTERRUPT_MARKER = "[Request interrupted by user"
_RUN_TOOL = re.compile(r"\bRUN_TOOL\s+(.+)", re.DOTALL)


# --------------------------------------------------------------------------- conversation


@dataclass(frozen=True)
class Message:
    """One entry of a conversation as the fake understands it.

    ``user`` is a real prompt typed by a person (context blocks such as ``<system-reminder>``
    or ``<environment_context>`` are dropped), ``assistant`` is model text, ``tool_call`` the
    command of a shell tool call and ``tool_result`` the output the CLI sent back.
    """

    role: Role
    text: str


@dataclass(frozen=True)
class Conversation:
    """The vendor-neutral view of one model request."""

    messages: tuple[Message, ...]
    tools: frozenset[str] = frozenset()
    json_schema: JSON | None = None

    @property
    def prompts(self) -> list[str]:
        """The real user prompts, oldest first."""
        return [m.text for m in self.messages if m.role == "user"]

    @property
    def last(self) -> Message | None:
        """The newest message, or None for an empty request."""
        return self.messages[-1] if self.messages else None


def is_context_text(text: str) -> bool:
    """Whether a user text block is CLI-injected context rather than something a person typed."""
    return bool(_CONTEXT_BLOCK.match(text)) or text.startswith(_INTERRUPT_MARKER)


def prompt_text(texts: list[str]) -> str:
    """Join the user-typed text blocks of one message, dropping injected context blocks."""
    return "\n".join(t for t in texts if t.strip() and not is_context_text(t))


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class TextReply:
    """Stream ``text`` in ``deltas`` pieces, ``delay`` seconds apart."""

    text: str
    deltas: int = DEFAULT_DELTAS
    delay: float = 0.0

    def pieces(self) -> list[str]:
        """Split the text into (at most) ``deltas`` non-empty consecutive pieces."""
        count = max(1, min(self.deltas, len(self.text)))
        bounds = [round(i * len(self.text) / count) for i in range(count + 1)]
        return [self.text[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def output_tokens(self) -> int:
        """The completion-token count to report for this reply."""
        return estimate_tokens(self.text) + 5


@dataclass(frozen=True)
class ToolReply:
    """Say ``text`` (in one delta) and then call the vendor's shell tool with ``command``."""

    command: str
    text: str = "Running a command."
    delay: float = 0.0

    def pieces(self) -> list[str]:
        """The text is streamed as a single delta."""
        return [self.text]

    def output_tokens(self) -> int:
        """The completion-token count to report for this reply."""
        return estimate_tokens(self.text + self.command) + 10


@dataclass(frozen=True)
class ErrorReply:
    """Answer with an HTTP error status."""

    status: int = 500


@dataclass(frozen=True)
class HangReply:
    """Never answer; the handler waits until the server shuts down."""


Reply = TextReply | ToolReply | ErrorReply | HangReply
Script = Callable[[Conversation], str | Reply | None]
"""A test's replies (``FakeServer.script``): for a conversation whose newest message is a
prompt, the text to stream (or any :data:`Reply`, e.g. a ``ToolReply``), or None to let the
magic words decide."""


def decide(
    conversation: Conversation, vendor: str, shell_tool: str, slow_delay: float = SLOW_DELAY_S
) -> Reply:
    """Choose the fake model's answer from the newest message of ``conversation``."""
    if conversation.json_schema is not None:
        return TextReply(json.dumps(fill_schema(conversation.json_schema)), deltas=1)
    last = conversation.last
    if last is not None and last.role == "tool_result":
        return TextReply(f"Tool said: {last.text}")
    if not conversation.prompts:
        return TextReply(f"Hello from fake {vendor}! (no prompt)")
    return _steer(conversation.prompts[-1], conversation, vendor, shell_tool, slow_delay)


def _steer(
    prompt: str, conversation: Conversation, vendor: str, shell_tool: str, slow_delay: float
) -> Reply:
    """Apply the magic words of the last user prompt."""
    if _magic("FAIL500", prompt):
        return ErrorReply(500)
    if _magic("HANG", prompt):
        return HangReply()
    if _magic("DIGEST", prompt):
        return TextReply(prompt_digest(prompt))
    tool = _RUN_TOOL.search(prompt)
    if tool:
        if shell_tool not in conversation.tools:
            return TextReply(f"Fake {vendor}: the {shell_tool} tool was not offered.")
        return ToolReply(tool.group(1).strip())
    turn = len(conversation.prompts)
    text = f"Hello from fake {vendor}! You said: {prompt} (turn {turn})"
    if _magic("SLOW", prompt):
        return TextReply(text, deltas=SLOW_DELTAS, delay=slow_delay)
    return TextReply(text)


def prompt_digest(prompt: str) -> str:
    """What the fake answers to a ``DIGEST`` prompt: its size and hash, never its text."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    return f"Prompt of {len(prompt)} characters, sha256 {digest}"


def _magic(word: str, prompt: str) -> bool:
    """Whether the magic ``word`` appears in ``prompt`` as a whole word."""
    return re.search(rf"\b{word}\b", prompt) is not None


def fill_schema(schema: JSON) -> JSON:
    """Produce a plausible value that satisfies a (JSON or Gemini-style) schema."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return fill_schema(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _fill_typed(str(kind).lower(), schema)


def _fill_typed(kind: str, schema: dict[str, JSON]) -> JSON:
    """Fill one schema node of a known ``type``."""
    match kind:
        case "object":
            props = schema.get("properties", {})
            return {name: fill_schema(sub) for name, sub in props.items()}
        case "array":
            return [fill_schema(schema.get("items", {"type": "string"}))]
        case "string":
            return "fake"
        case "integer":
            return int(schema.get("minimum", 1))
        case "number":
            return float(schema.get("minimum", 1))
        case "boolean":
            return True
        case _:
            return None


def estimate_tokens(text: str) -> int:
    """A rough but realistic token count (about four characters per token)."""
    return max(1, len(text) // 4)


def new_id(prefix: str) -> str:
    """A random id with a vendor-looking prefix."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: JSON | None
    raw_body: bytes = field(repr=False, default=b"")

    def header(self, name: str) -> str | None:
        """A header value, looked up case-insensitively."""
        return self.headers.get(name.lower())


# --------------------------------------------------------------------------- HTTP plumbing


class Exchange:
    """One request/response on the wire, with helpers for JSON and streaming bodies."""

    def __init__(self, handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        self._handler = handler
        self.request = request

    def send_json(self, payload: JSON, status: int = 200) -> None:
        """Answer with a complete JSON body."""
        data = json.dumps(payload).encode()
        self._handler.send_response(status)
        self._handler.send_header("Content-Type", "application/json")
        self._handler.send_header("Content-Length", str(len(data)))
        self._handler.end_headers()
        if self.request.method != "HEAD":
            self._handler.wfile.write(data)

    def send_empty(self, status: int = 200) -> None:
        """Answer with an empty body."""
        self._handler.send_response(status)
        self._handler.send_header("Content-Length", "0")
        self._handler.end_headers()

    def start_stream(self, content_type: str = "text/event-stream") -> None:
        """Send the headers of a chunked (streamed) response."""
        self._handler.send_response(200)
        self._handler.send_header("Content-Type", content_type)
        self._handler.send_header("Cache-Control", "no-cache")
        self._handler.send_header("Transfer-Encoding", "chunked")
        self._handler.end_headers()

    def write_chunk(self, data: bytes) -> None:
        """Send one chunk of a streamed response and flush it."""
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self._handler.wfile.flush()

    def end_stream(self) -> None:
        """Send the terminating chunk of a streamed response."""
        self._handler.wfile.write(b"0\r\n\r\n")
        self._handler.wfile.flush()

    def abandon(self) -> None:
        """Close the connection after this exchange without (finishing) an answer."""
        self._handler.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    """Routes every method to the owning fake; the server carries a back-reference to it."""

    protocol_version = "HTTP/1.1"
    server: _BoundServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests inspect ``fake.requests`` instead."""

    def _dispatch(self) -> None:
        request = self._read_request()
        self.server.fake._record(request)
        try:
            self.server.fake.route(Exchange(self, request))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the CLI went away mid-answer (killed or interrupted)

    def _read_request(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        return RecordedRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=_parse_json(raw),
            raw_body=raw,
        )


def _parse_json(raw: bytes) -> JSON | None:
    """The JSON value of a request body, or None if it is empty or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


class _BoundServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows the fake it serves."""

    daemon_threads = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


# --------------------------------------------------------------------------- the fake


class FakeServer(ABC):
    """Base class of the fakes: lifecycle, recording and the magic-word steering.

    Subclasses set ``vendor`` and ``shell_tool`` and implement the abstract hooks: parse a
    request (:meth:`conversation`, :meth:`is_model_call`), route it (:meth:`route`, which ends
    in :meth:`answer` for model calls) and render replies on the wire.
    """

    vendor: ClassVar[str] = "model"
    shell_tool: ClassVar[str] = "shell"

    def __init__(self, slow_delay: float = SLOW_DELAY_S) -> None:
        """Create a stopped fake; ``slow_delay`` is the pause between ``SLOW`` deltas."""
        self.slow_delay = slow_delay
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._closing = threading.Event()
        self._server: _BoundServer | None = None
        self._thread: threading.Thread | None = None
        self.script: Script | None = None
        """Optional: the model's answer to a new prompt (see :data:`Script`), so a test can
        give each conversation recognisable replies of its own."""

    # -- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind 127.0.0.1:0 and serve from a daemon thread."""
        self._server = _BoundServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"fake-{self.vendor}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Release hanging handlers, stop serving and close the socket."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def model_requests(self) -> list[RecordedRequest]:
        """The requests that asked the model for a conversation turn, oldest first.

        Side calls are left out: preflights, token counts and structured-output calls such as
        Claude's title generation or Gemini's model router.
        """
        return [r for r in self.requests if self.is_turn_request(r)]

    def is_turn_request(self, request: RecordedRequest) -> bool:
        """Whether ``request`` is a model call for a conversation turn (not a side call)."""
        return self.is_model_call(request) and self.conversation(request).json_schema is None

    def wait_for_requests(
        self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Block until ``predicate(requests)`` holds; raise TimeoutError after ``timeout`` s."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self._requests), timeout):
                raise TimeoutError(f"fake {self.vendor}: condition not met within {timeout} s")
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    # -- conversation view

    @abstractmethod
    def conversation(self, request: RecordedRequest) -> Conversation:
        """The vendor-neutral view of a model request."""

    def transcript(self, request: RecordedRequest) -> list[Message]:
        """All user-visible messages of a model request: prompts, replies, tool calls/results."""
        return list(self.conversation(request).messages)

    def visible_text(self, request: RecordedRequest) -> str:
        """The transcript as one string, one ``role: text`` line per message."""
        return "\n".join(f"{m.role}: {m.text}" for m in self.transcript(request))

    @abstractmethod
    def is_model_call(self, request: RecordedRequest) -> bool:
        """Whether ``request`` is a call to the model (including side calls)."""

    # -- answering (vendor hooks)

    @abstractmethod
    def route(self, exchange: Exchange) -> None:
        """Answer one exchange; model calls should end in :meth:`answer`."""

    @abstractmethod
    def stream_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> Events:
        """The SSE events of a streamed reply, each with the delay to wait before it."""

    @abstractmethod
    def json_reply(self, reply: TextReply | ToolReply, request: RecordedRequest) -> JSON:
        """The body of a non-streamed reply."""

    @abstractmethod
    def error_payload(self, status: int) -> JSON:
        """The vendor's error body for an HTTP error ``status``."""

    # -- answering (shared)

    def reply_for(self, request: RecordedRequest) -> Reply:
        """The fake model's answer to a model request."""
        conversation = self.conversation(request)
        last = conversation.last
        if self.script is not None and conversation.json_schema is None and last is not None:
            scripted = self.script(conversation) if last.role == "user" else None
            if scripted is not None:
                return TextReply(scripted) if isinstance(scripted, str) else scripted
        return decide(conversation, self.vendor, self.shell_tool, self.slow_delay)

    def answer(self, exchange: Exchange, stream: bool) -> None:
        """Answer a model call according to :meth:`reply_for`."""
        reply = self.reply_for(exchange.request)
        match reply:
            case ErrorReply(status=status):
                exchange.send_json(self.error_payload(status), status)
            case HangReply():
                self._closing.wait()
                exchange.abandon()
            case TextReply() | ToolReply() if stream:
                self._stream(exchange, self.stream_reply(reply, exchange.request))
            case TextReply() | ToolReply():
                exchange.send_json(self.json_reply(reply, exchange.request))

    def _stream(self, exchange: Exchange, events: Events) -> None:
        """Send SSE events, pausing before each; give up when the server shuts down."""
        exchange.start_stream()
        for data, delay in events:
            if self._closing.wait(delay):
                exchange.abandon()
                return
            exchange.write_chunk(data)
        exchange.end_stream()


def sse(event: str | None, payload: JSON, delay: float = 0.0) -> tuple[bytes, float]:
    """One server-sent event (``event:`` line only when given) and the delay before it."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode(), delay
