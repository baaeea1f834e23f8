"""The ``gemini`` backend: Gemini CLI in headless turns (``gemini --prompt=… -o stream-json``).

One process per turn; the next turn continues the conversation with ``--resume <session_id>``,
the id Gemini reports in its ``init`` line. Gemini keeps sessions per project (the cwd), which
suits a session whose cwd never changes.

The stream-json dialect is one JSON object per stdout line, tagged by ``type``: ``init``,
``message`` (the user's prompt echoed, then the assistant's text in ``delta`` pieces),
``tool_use``, ``tool_result``, ``error`` (a warning or error during the turn) and ``result``
(the turn's end, with token stats). The driver never raises and never drops a line: text that
is not a JSON object, or an object that does not fit the schema, becomes a ``raw`` chunk; an
object of a type it does not know becomes a ``system`` chunk naming the type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    ChunkData,
    Driver,
    Located,
    PermissionPolicy,
    SessionSpec,
    locate_executable,
    package_version,
)
from agentplex.plugins.json_lines import decode_line
from agentplex.plugins.stream_json import tool_summary
from agentplex.protocol import ChunkKind, Stream, Usage

PACKAGE = "@google/gemini-cli"
INSTRUCTIONS_PREAMBLE = "Follow these instructions for the whole conversation:"
"""Heads the persona's instructions in the first prompt. Plain text rather than a tag, so the
prompt does not read as a context block such as Gemini's own ``<session_context>``."""


class GeminiBackend:
    """Gemini CLI, one headless process per turn, continued with ``--resume``."""

    id = "gemini"
    modes = (BackendMode.TURN,)
    description = "Gemini CLI (gemini -p, stream-json)"
    capabilities = Capabilities(resume=True, streamed_deltas=True, tool_events=True)

    def locate(self) -> Located:
        return locate_executable(self.id, "gemini")

    def version(self, executable: str) -> str | None:
        return package_version(Path(executable), PACKAGE)

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        argv = [self.locate().executable or "gemini", "--output-format", "stream-json"]
        # Headless Gemini exits 55 in a folder it has not been told to trust.
        argv.append("--skip-trust")
        if spec.model:
            argv += ["-m", spec.model]
        if spec.permission_policy is PermissionPolicy.ALLOW:
            # Headless, the default approval mode does not even offer the shell and write
            # tools to the model; --yolo offers them and runs them unasked.
            argv.append("--yolo")
        if resume_id:
            argv += ["--resume", resume_id]
        # One argument with "=", so a prompt that starts with "-" is not read as a flag.
        return [*argv, f"--prompt={turn_prompt(spec, message or '', resume_id)}"]

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        # Otherwise Gemini re-launches itself as a child that the signals sent to the
        # parent (interrupt, terminate) never reach.
        return {"GEMINI_CLI_NO_RELAUNCH": "true"}

    def driver(self, spec: SessionSpec) -> GeminiStreamParser:
        return GeminiStreamParser()


def turn_prompt(spec: SessionSpec, message: str, resume_id: str | None) -> str:
    """The prompt for a turn: a new conversation opens with the persona's instructions.

    Gemini takes a system prompt only as a whole replacement (``GEMINI_SYSTEM_MD``), which
    would drop its own tool and safety guidance, and reads standing instructions only from
    GEMINI.md files in the user's home or project. So the instructions head the first
    message instead; resumed turns carry them on in the saved history.
    """
    if resume_id or not spec.instructions:
        return message
    instructions = f"<instructions>\n{spec.instructions}\n</instructions>"
    return f"{INSTRUCTIONS_PREAMBLE}\n{instructions}\n\n{message}"


# --------------------------------------------------------------------------- schema


class _ErrorBody(msgspec.Struct, frozen=True):
    type: str = ""
    message: str = ""


class _Stats(msgspec.Struct, frozen=True):
    """Token totals of every API call in the turn (``input_tokens`` includes ``cached``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached: int = 0
    duration_ms: float | None = None


class _Line(msgspec.Struct, frozen=True, tag_field="type"):
    timestamp: str | None = None


class _Init(_Line, frozen=True, tag="init"):
    session_id: str | None = None
    model: str | None = None


class _Message(_Line, frozen=True, tag="message"):
    role: str = ""
    content: str = ""
    delta: bool = False


class _ToolUse(_Line, frozen=True, tag="tool_use"):
    tool_name: str = ""
    tool_id: str | None = None
    parameters: Any = None


class _ToolResult(_Line, frozen=True, tag="tool_result"):
    tool_id: str | None = None
    status: str = ""
    output: str | None = None
    error: _ErrorBody | None = None


class _Error(_Line, frozen=True, tag="error"):
    severity: str = ""
    message: str = ""


class _Result(_Line, frozen=True, tag="result"):
    status: str = ""
    error: _ErrorBody | None = None
    stats: _Stats | None = None


_Known = _Init | _Message | _ToolUse | _ToolResult | _Error | _Result
_decode_known = msgspec.json.Decoder(_Known).decode
_KNOWN_TYPES = frozenset({"init", "message", "tool_use", "tool_result", "error", "result"})


# --------------------------------------------------------------------------- parser


class GeminiStreamParser(Driver):
    """A driver for one Gemini CLI turn in ``--output-format stream-json``.

    It keeps the assistant text written since the last tool call, because Gemini's
    ``result`` line does not repeat the final reply the way other CLIs' results do.
    """

    def __init__(self) -> None:
        self._reply: list[str] = []

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        known = decode_line(line, stream, _decode_known, _KNOWN_TYPES)
        if isinstance(known, list):
            return known
        return self._chunks(known)

    def _chunks(self, line: _Known) -> list[ChunkData]:
        match line:
            case _Init():
                text = f"init: model {line.model}"
                return [
                    ChunkData(
                        ChunkKind.SYSTEM, text, cli_session_id=line.session_id, model=line.model
                    )
                ]
            case _Message(role="assistant"):
                self._reply.append(line.content)
                return [ChunkData(ChunkKind.TEXT, line.content, partial=line.delta)]
            case _Message():
                return [ChunkData(ChunkKind.SYSTEM, f"{line.role or 'message'}: {line.content}")]
            case _ToolUse():
                self._reply.clear()
                return [_tool_use_chunk(line)]
            case _ToolResult():
                return [_tool_result_chunk(line)]
            case _Error():
                return [_error_chunk(line)]
            case _Result():
                return _result_chunks(line, "".join(self._reply))


def _tool_use_chunk(line: _ToolUse) -> ChunkData:
    name = line.tool_name or "?"
    return ChunkData(
        ChunkKind.TOOL_USE,
        tool_summary(name, line.parameters),
        tool_name=name,
        tool_input=line.parameters,
    )


def _tool_result_chunk(line: _ToolResult) -> ChunkData:
    # Gemini says "success" for a command that ran and failed (its exit code is only in
    # the output); "error" means the tool itself could not run.
    is_error = line.status != "success"
    text = line.output or (line.error.message if line.error else "")
    return ChunkData(ChunkKind.TOOL_RESULT, text, is_error=is_error)


def _error_chunk(line: _Error) -> ChunkData:
    if line.severity == "error":
        return ChunkData(ChunkKind.ERROR, line.message, is_error=True)
    return ChunkData(ChunkKind.SYSTEM, f"{line.severity or 'error'}: {line.message}")


def _result_chunks(line: _Result, reply: str) -> list[ChunkData]:
    usage = _usage(line.stats or _Stats())
    if line.status != "error":
        return [ChunkData(ChunkKind.RESULT, reply, usage=usage)]
    message = line.error.message if line.error and line.error.message else "turn failed"
    return [
        ChunkData(ChunkKind.ERROR, message, is_error=True),
        ChunkData(ChunkKind.RESULT, message, is_error=True, usage=usage),
    ]


def _usage(stats: _Stats) -> Usage:
    return Usage(
        input_tokens=stats.input_tokens,
        output_tokens=stats.output_tokens,
        cached_tokens=stats.cached,
        duration_ms=None if stats.duration_ms is None else int(stats.duration_ms),
    )
