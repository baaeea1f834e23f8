"""Codex's ``codex exec --json`` event stream, read line by line into chunks.

Each stdout line is one JSON object tagged by ``type``: ``thread.started`` (the thread id,
used to resume), ``turn.started``, ``item.started`` / ``item.updated`` / ``item.completed``
(an item tagged by its own ``type``: ``agent_message``, ``reasoning``, ``command_execution``,
``file_change``, ``mcp_tool_call``, …), ``item.plan.delta``, ``request_user_input``,
``turn.completed`` (usage), ``turn.failed`` and ``error``. Agent text is never streamed in
this mode: it arrives whole in ``item.completed``.

The usage of ``turn.completed`` is the thread's running total, not the turn's: a resumed
turn reports what every turn of the thread used so far (two turns billed 9,518 and 9,605
input tokens: the second reports 19,123). The result's usage is tagged
``UsageScope.THREAD`` so that the daemon counts only the difference.

The parser never raises and never drops a line: text that is not a JSON object, or an object
that does not fit the schema, becomes a ``raw`` chunk; an event or item type it does not know
becomes a ``system`` chunk naming the type. The one event it skips on purpose is the start
(or update) of an agent message or reasoning item, whose text only comes with its completion.
"""

from __future__ import annotations

import time
import typing
from typing import Any

import msgspec

from agentplex.plugins.api import ChunkData, Driver
from agentplex.plugins.json_lines import decode_line
from agentplex.plugins.stream_json import tool_summary
from agentplex.protocol import ChunkKind, Stream, Usage, UsageScope

COMMAND_TOOL = "command_execution"
"""``tool_name`` of a shell command Codex ran (Codex's own name for the item)."""

# --------------------------------------------------------------------------- schema


class _Failure(msgspec.Struct, frozen=True):
    message: str = ""


class _FileChange(msgspec.Struct, frozen=True):
    path: str = ""
    kind: str = ""


class _McpResult(msgspec.Struct, frozen=True):
    content: list[Any] = []
    structured_content: Any = None


class _Todo(msgspec.Struct, frozen=True):
    text: str = ""
    completed: bool = False


class _Item(msgspec.Struct, frozen=True):
    """A thread item; which fields are set depends on ``type``."""

    id: str = ""
    type: str = ""
    text: str | None = None
    message: str | None = None
    command: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    status: str | None = None
    changes: list[_FileChange] = []
    server: str | None = None
    tool: str | None = None
    arguments: Any = None
    result: _McpResult | None = None
    error: _Failure | None = None
    query: str | None = None
    action: Any = None
    prompt: str | None = None
    receiver_thread_ids: list[str] = []
    agents_states: Any = None
    items: list[_Todo] = []


class _Usage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


class _Question(msgspec.Struct, frozen=True):
    question: str = ""


class _Line(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class _ThreadStarted(_Line, frozen=True, tag="thread.started"):
    thread_id: str = ""


class _TurnStarted(_Line, frozen=True, tag="turn.started"):
    pass


class _TurnCompleted(_Line, frozen=True, tag="turn.completed"):
    usage: _Usage = _Usage()


class _TurnFailed(_Line, frozen=True, tag="turn.failed"):
    error: _Failure = _Failure()


class _ItemEvent(_Line, frozen=True):
    item: _Item = _Item()


class _ItemStarted(_ItemEvent, frozen=True, tag="item.started"):
    pass


class _ItemUpdated(_ItemEvent, frozen=True, tag="item.updated"):
    pass


class _ItemCompleted(_ItemEvent, frozen=True, tag="item.completed"):
    pass


class _PlanDelta(_Line, frozen=True, tag="item.plan.delta"):
    delta: str = ""


class _RequestUserInput(_Line, frozen=True, tag="request_user_input"):
    questions: list[_Question] = []


class _Error(_Line, frozen=True, tag="error"):
    message: str = ""


_Known = (
    _ThreadStarted
    | _TurnStarted
    | _TurnCompleted
    | _TurnFailed
    | _ItemStarted
    | _ItemUpdated
    | _ItemCompleted
    | _PlanDelta
    | _RequestUserInput
    | _Error
)
_KNOWN_TYPES = frozenset(t.__struct_config__.tag for t in typing.get_args(_Known))
_decode_known = msgspec.json.Decoder(_Known).decode
_encode_any = msgspec.json.Encoder().encode

_FAILED_STATUSES = frozenset({"failed", "declined"})
_TOOL_ITEMS = frozenset(
    {COMMAND_TOOL, "file_change", "mcp_tool_call", "web_search", "collab_tool_call"}
)


# --------------------------------------------------------------------------- parser


class CodexEventParser(Driver):
    """A driver for one ``codex exec --json`` turn process.

    It remembers what the events alone do not say: the turn's last agent message (the
    result's text), the last ``error`` (so ``turn.failed`` repeating it is not reported
    twice), which tool items already got a ``tool_use`` chunk, when the process started
    (the result's ``duration_ms``; Codex reports none) and whether the thread is saved.
    """

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._thread_id: str | None = None
        self._saved_thread_id: str | None = None
        self._last_text = ""
        self._last_error: str | None = None
        self._announced: set[str] = set()

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        known = decode_line(line, stream, _decode_known, _KNOWN_TYPES)
        if isinstance(known, list):
            return known
        return self._chunks(known)

    def resumable_id(self) -> str | None:
        """The thread id once Codex has saved the thread, else None.

        Codex writes the thread's rollout file before it reports ``turn.started``; a turn
        killed before that leaves nothing to resume ("no rollout found"), while one killed
        or interrupted after it resumes fine (Codex exits 1 on SIGINT, with no result).
        """
        return self._saved_thread_id

    def _chunks(self, line: _Known) -> list[ChunkData]:
        match line:
            case _ThreadStarted(thread_id=thread_id):
                self._thread_id = thread_id or None
                text = f"thread started: {thread_id}"
                return [ChunkData(ChunkKind.SYSTEM, text, cli_session_id=thread_id or None)]
            case _TurnStarted():
                self._saved_thread_id = self._thread_id
                return [ChunkData(ChunkKind.SYSTEM, "turn started")]
            case _ItemStarted(item=item):
                return self._item_progress(item, "item.started")
            case _ItemUpdated(item=item):
                return self._item_progress(item, "item.updated")
            case _ItemCompleted(item=item):
                return self._item_completed(item)
            case _PlanDelta(delta=delta):
                return [ChunkData(ChunkKind.TEXT, delta, partial=True)]
            case _RequestUserInput(questions=questions):
                asked = "\n".join(q.question for q in questions)
                return [ChunkData(ChunkKind.SYSTEM, f"request_user_input: {asked}".rstrip())]
            case _Error(message=message):
                self._last_error = message
                return [_error(message)]
            case _TurnFailed(error=error):
                return self._turn_failed(error.message)
            case _TurnCompleted(usage=usage):
                return [self._result(usage)]

    # ------------------------------------------------------------------ items

    def _item_progress(self, item: _Item, event: str) -> list[ChunkData]:
        """An item that started or changed. Message-like items (agent text, reasoning)
        give nothing until they complete: exec mode sends their text only whole."""
        if item.type in _TOOL_ITEMS:
            return self._announce(item)
        if item.type == "todo_list":
            return [_todo_chunk(item)]
        if item.type in ("agent_message", "reasoning", "plan", "error"):
            return []
        return [ChunkData(ChunkKind.SYSTEM, f"{event}: {item.type or 'untyped'} item")]

    def _item_completed(self, item: _Item) -> list[ChunkData]:
        match item.type:
            case "agent_message" | "plan":
                self._last_text = item.text or ""
                return [ChunkData(ChunkKind.TEXT, self._last_text)]
            case "reasoning":
                return [ChunkData(ChunkKind.THINKING, item.text or "")]
            case "error":
                return [_error(item.message or "")]
            case "todo_list":
                return [_todo_chunk(item)]
            case kind if kind in _TOOL_ITEMS:
                return [*self._announce(item), _tool_result(item)]
            case other:
                return [ChunkData(ChunkKind.SYSTEM, f"item.completed: {other or 'untyped'} item")]

    def _announce(self, item: _Item) -> list[ChunkData]:
        """The item's ``tool_use`` chunk, once per item id: Codex sends some tool items
        (file changes) only as completed, and repeats others as they progress."""
        if item.id and item.id in self._announced:
            return []
        self._announced.add(item.id)
        name, tool_input = _tool_call(item)
        # A file change has no single path or command to show: list the changes instead.
        shown = {"path": _changed_paths(item)} if item.type == "file_change" else tool_input
        text = tool_summary(name, shown)
        return [ChunkData(ChunkKind.TOOL_USE, text, tool_name=name, tool_input=tool_input)]

    # ------------------------------------------------------------------ turn end

    def _turn_failed(self, message: str) -> list[ChunkData]:
        chunks = [] if message == self._last_error else [_error(message)]
        return [*chunks, ChunkData(ChunkKind.RESULT, message, is_error=True)]

    def _result(self, usage: _Usage) -> ChunkData:
        elapsed = int((time.monotonic() - self._started) * 1000)
        totals = Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_input_tokens,
            duration_ms=elapsed,
            scope=UsageScope.THREAD,
        )
        return ChunkData(ChunkKind.RESULT, self._last_text, usage=totals)


def _error(message: str) -> ChunkData:
    return ChunkData(ChunkKind.ERROR, message, is_error=True)


def _tool_call(item: _Item) -> tuple[str, Any]:
    """The tool name and input a tool item stands for."""
    match item.type:
        case "command_execution":
            return COMMAND_TOOL, {"command": item.command or ""}
        case "file_change":
            changes = [{"path": c.path, "kind": c.kind} for c in item.changes]
            return "file_change", {"changes": changes}
        case "mcp_tool_call":
            return f"{item.server or '?'}/{item.tool or '?'}", item.arguments
        case "web_search":
            return "web_search", {"query": item.query or ""}
        case _:
            receivers = item.receiver_thread_ids
            return f"collab:{item.tool or '?'}", {"prompt": item.prompt, "receivers": receivers}


def _tool_result(item: _Item) -> ChunkData:
    name, _ = _tool_call(item)
    failed = item.status in _FAILED_STATUSES or item.error is not None
    failed |= item.exit_code is not None and item.exit_code != 0
    return ChunkData(ChunkKind.TOOL_RESULT, _result_text(item), tool_name=name, is_error=failed)


def _result_text(item: _Item) -> str:
    match item.type:
        case "command_execution":
            return item.aggregated_output or ""
        case "file_change":
            return "\n".join(f"{c.kind} {c.path}" for c in item.changes) or (item.status or "")
        case "mcp_tool_call":
            if item.error is not None:
                return item.error.message
            return _mcp_text(item.result) if item.result else ""
        case "web_search":
            return _compact(item.action) if item.action is not None else item.query or ""
        case _:
            return _compact(item.agents_states) if item.agents_states else (item.status or "")


def _changed_paths(item: _Item) -> str:
    """The changed files on one line, for the ``tool_use`` summary."""
    return ", ".join(f"{c.kind} {c.path}" for c in item.changes)


def _mcp_text(result: _McpResult) -> str:
    """An MCP result's text blocks joined; other blocks (images, …) as compact JSON."""
    parts = [_block_text(block) for block in result.content]
    text = "\n".join(part for part in parts if part)
    if not text and result.structured_content is not None:
        return _compact(result.structured_content)
    return text


def _block_text(block: Any) -> str:
    if isinstance(block, dict) and block.get("type") == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    return _compact(block)


def _todo_chunk(item: _Item) -> ChunkData:
    lines = [f"[{'x' if todo.completed else ' '}] {todo.text}" for todo in item.items]
    return ChunkData(ChunkKind.SYSTEM, "\n".join(["todo list:", *lines]))


def _compact(value: Any) -> str:
    """A decoded JSON value as compact JSON text."""
    try:
        return _encode_any(value).decode()
    except RecursionError:
        return "[nested too deeply to show]"
