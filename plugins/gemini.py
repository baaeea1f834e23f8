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

import hashlib
import json
import os
import tempfile
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
    StdinTurn,
    locate_executable,
    package_version,
)
from agentplex.plugins.gemini_lock import clear_orphaned_lock, gemini_home
from agentplex.plugins.json_lines import decode_line
from agentplex.plugins.stream_json import tool_summary
from agentplex.protocol import ChunkKind, Stream, Usage, UsageScope
from agentplex.protocol.errors import InvalidArgument, SpawnFailed

PACKAGE = "@google/gemini-cli"
CREDENTIALS = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
"""What Gemini CLI authenticates with: an API key (and the endpoint), Vertex AI and its
project, or a Google login kept in ``~/.gemini``."""
INSTRUCTIONS_PREAMBLE = "Follow these instructions for the whole conversation:"
"""Heads the persona's instructions in the first prompt. Plain text rather than a tag, so the
prompt does not read as a context block such as Gemini's own ``<session_context>``."""

READ_ONLY_TOOLS = (
    "read_file",
    "read_many_files",
    "glob",
    "grep_search",
    "list_directory",
    "google_web_search",
)
"""The tools ``deny`` lets run when the session names no ``allowed_tools`` (the read-only
ones of Gemini's own ``policies/read-only.toml``)."""
TOOL_NAMES = {
    "Read": ("read_file", "read_many_files"),
    "Grep": ("grep_search",),
    "Glob": ("glob", "list_directory"),
    "LS": ("list_directory",),
    "Bash": ("run_shell_command",),
    "Write": ("write_file",),
    "Edit": ("replace",),
    "MultiEdit": ("replace",),
    "WebFetch": ("web_fetch",),
    "WebSearch": ("google_web_search",),
}
"""Gemini's tools for the Claude-style names personas use in ``allowed_tools``; any other
name is taken as Gemini's own (``run_shell_command``, an MCP tool, ...)."""
POLICIES = {
    PermissionPolicy.ALLOW: "every tool runs unasked (--yolo)",
    PermissionPolicy.DENY: "only allowed_tools run (Claude names such as Read, Grep, Bash are "
    "mapped; none given: the read-only tools); every other tool is denied by an admin "
    "policy that the user's settings cannot override",
    PermissionPolicy.ASK: "refused: headless gemini cannot ask (use deny or allow, or "
    "-b acp -- gemini --acp, which asks)",
}
"""What each permission policy does for Gemini, for ``personas``, ``--help`` and the README."""


class GeminiBackend:
    """Gemini CLI, one headless process per turn, continued with ``--resume``."""

    id = "gemini"
    credentials = CREDENTIALS
    credential_files = ("~/.gemini/oauth_creds.json",)
    modes = (BackendMode.TURN,)
    description = "Gemini CLI (gemini -p, stream-json)"
    capabilities = Capabilities(resume=True, streamed_deltas=True, tool_events=True)
    default_policy = PermissionPolicy.DENY
    """The policy of a session that names none: headless Gemini cannot hold ``ask``."""
    policies = POLICIES

    def locate(self) -> Located:
        return locate_executable(self.id, "gemini")

    def version(self, executable: str) -> str | None:
        return package_version(Path(executable), PACKAGE)

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        # Called as each turn starts: a lock an earlier Gemini process died holding would
        # stall this turn 13 to 51 s (see gemini_lock). The session's own HOME comes first.
        home = gemini_home(spec.env) or gemini_home(os.environ)
        if home is not None:
            clear_orphaned_lock(home)
        argv = [self.locate().executable or "gemini", "--output-format", "stream-json"]
        # Headless Gemini exits 55 in a folder it has not been told to trust.
        argv.append("--skip-trust")
        if spec.model:
            argv += ["-m", spec.model]
        argv += _policy_flags(spec)
        if resume_id:
            argv += ["--resume", resume_id]
        # One argument with "=", so a prompt that starts with "-" is not read as a flag.
        return [*argv, f"--prompt={turn_prompt(spec, message or '', resume_id)}"]

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        """The turn with its prompt on stdin: without ``--prompt``, Gemini reads piped
        stdin as the prompt (up to 8 MiB; it waits 500 ms for the first bytes)."""
        *argv, prompt = self.argv(spec, "", resume_id)
        assert prompt.startswith("--prompt="), "a turn's argv ends with the prompt"
        return StdinTurn(argv, turn_prompt(spec, message, resume_id).encode())

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        # Otherwise Gemini re-launches itself as a child that the signals sent to the
        # parent (interrupt, terminate) never reach.
        return {"GEMINI_CLI_NO_RELAUNCH": "true"}

    def driver(self, spec: SessionSpec) -> GeminiStreamParser:
        return GeminiStreamParser()

    def check_policy(self, spec: SessionSpec) -> None:
        """Refuse a start under a policy Gemini cannot hold (called once, at start)."""
        if spec.permission_policy is PermissionPolicy.ASK:
            raise InvalidArgument(
                "the gemini backend cannot ask for permission: headless gemini (-p) has no "
                "one to ask; use --policy deny or --policy allow, or start "
                "-b acp -- gemini --acp, whose permission requests wait for permit"
            )


def _policy_flags(spec: SessionSpec) -> list[str]:
    """The flags that hold the session's permission policy.

    ``allow`` is ``--yolo``. Anything else (``deny``, and ``ask`` of a session recorded
    before it was refused) is the default approval mode, given explicitly (the user's
    ``defaultApprovalMode`` may be yolo), under an admin-tier policy file that denies every
    tool but the allowed ones: the user's ``tools.allowed`` or own policies cannot win
    over it, and a denied tool is not even offered to the model.
    """
    if spec.permission_policy is PermissionPolicy.ALLOW:
        return ["--yolo"]
    return ["--approval-mode", "default", "--admin-policy", str(deny_policy_file(spec))]


def deny_policy_file(spec: SessionSpec) -> Path:
    """The admin policy file for ``deny`` with the session's allowed tools, written once.

    Named for its content, so sessions with the same tools share it and one never changes
    under a running turn; written whole (a temporary file renamed), owner-only.
    """
    text = deny_policy(spec.allowed_tools)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = (spec.scratch_dir / "gemini").absolute()
    path = folder / f"deny-{digest}.toml"
    if path.is_file():
        return path
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".deny-", suffix=".toml")
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        raise SpawnFailed(f"cannot write gemini's deny policy {path}: {exc.strerror}") from exc
    return path


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: JSON's escapes are TOML's, but for DEL, which JSON
    leaves raw and TOML refuses (non-ASCII stays raw: JSON would split it in surrogates)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def deny_policy(allowed_tools: tuple[str, ...]) -> str:
    """A Gemini policy (TOML) that denies every tool but ``allowed_tools`` (mapped from
    Claude names; the read-only tools if none), which run without asking."""
    names = [name for tool in allowed_tools for name in TOOL_NAMES.get(tool, (tool,))]
    allowed = list(dict.fromkeys(names)) if allowed_tools else list(READ_ONLY_TOOLS)
    listed = ", ".join(_toml_string(name) for name in allowed)
    return (
        "# Written by agentplex for permission policy deny.\n"
        "[[rule]]\n"
        'toolName = "*"\n'
        'decision = "deny"\n'
        "priority = 900\n"
        'denyMessage = "denied by the agentplex session\'s permission policy (deny)"\n'
        "\n"
        "[[rule]]\n"
        f"toolName = [{listed}]\n"
        'decision = "allow"\n'
        "priority = 950\n"
    )


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
    # The stats count this process's API calls only, and a process runs one turn: a resumed
    # turn reports its own calls, not the conversation's (two turns billed 7,791 and 7,824
    # input tokens; the second reports 7,824).
    return Usage(
        input_tokens=stats.input_tokens,
        output_tokens=stats.output_tokens,
        cached_tokens=stats.cached,
        duration_ms=None if stats.duration_ms is None else int(stats.duration_ms),
        scope=UsageScope.TURN,
    )
