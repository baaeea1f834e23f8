"""The ``claude`` backend: Claude Code headless (``claude -p``, stream-json).

Turn mode (the default) runs one ``claude -p`` per turn and continues the conversation
with ``--resume <session_id>``; Claude keeps its transcripts per working directory, so a
session's turns all run in its one cwd. Long-lived mode runs one process that reads
stream-json ``user`` lines on stdin and speaks Claude's control protocol (see
:mod:`agentplex.plugins.claude_driver`).

Persona instructions go to ``--append-system-prompt`` (they add to Claude Code's own
system prompt instead of replacing it), the model to ``--model`` and the allowed tools to
``--allowedTools``.

Permission policies (:data:`POLICIES` says it in one line each, for ``personas``):

* ``allow``: turn mode ``--dangerously-skip-permissions``; Claude refuses that flag when
  run as root unless ``IS_SANDBOX=1``, so the backend sets it then (and only then: it also
  changes other behaviour of the CLI). Long-lived mode: the driver allows every request.
* ``deny``: ``--permission-mode dontAsk``: Claude itself refuses every tool use its rules
  do not allow (``allowed_tools``, and what it deems read-only, like ``echo``), without
  asking anyone. With ``allowed_tools`` also ``--tools``: the tools they name are the only
  ones that exist (a call of another, even a read-only ``Bash: echo``, fails as "No such
  tool available"). Measured with 2.1.197 against the fake: the default permission mode,
  and ``--allowedTools`` alone, still ran ``Bash: echo``.
* ``ask``: only in long-lived mode, where Claude asks the daemon
  (``--permission-prompt-tool stdio``) and the session waits in ``waiting_input`` for
  ``permit``. A ``claude -p`` turn has nobody to ask (its default silently refuses), so a
  start that names ``ask`` in turn mode is refused, naming ``--mode long_lived``; ``ask``
  that only came from a persona or the default falls back to ``deny``.

Long-lived mode always passes ``--permission-prompt-tool stdio``: what Claude's flags leave
to be asked is asked of the daemon, and the driver answers ``allow`` and ``deny`` at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    Driver,
    Located,
    PermissionPolicy,
    SessionSpec,
    StdinTurn,
    locate_executable,
    package_version,
)
from agentplex.plugins.claude_driver import ClaudeDriver
from agentplex.plugins.stream_json import ClaudeStreamParser
from agentplex.protocol import UsageScope
from agentplex.protocol.errors import InvalidArgument

DEFAULT_COMMAND = "claude"
NPM_PACKAGE = "@anthropic-ai/claude-code"
CREDENTIALS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_USE_BEDROCK",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
"""What Claude Code authenticates with: an API key or token (and the endpoint), its config
dir (where ``/login`` keeps a subscription login), or Bedrock/Vertex and their cloud's."""
POLICIES = {
    PermissionPolicy.ALLOW: "every tool runs unasked (turn: --dangerously-skip-permissions; "
    "long-lived: the daemon allows each request)",
    PermissionPolicy.DENY: "Claude refuses, unasked, what its rules do not allow "
    "(--permission-mode dontAsk; read-only commands like echo run); with allowed_tools, "
    "--tools: no other tool exists",
    PermissionPolicy.ASK: "long-lived mode only: the session waits in waiting_input for permit; "
    "turn mode refuses it when named, else falls back to deny",
}
"""What each permission policy does for Claude, for ``personas``, ``--help`` and the README."""
STREAM_FLAGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


class ClaudeBackend:
    """Claude Code headless: one ``claude -p`` per turn, or one long-lived stream-json process."""

    id = "claude"
    credentials = CREDENTIALS
    credential_files = ("~/.claude/.credentials.json",)
    modes = (BackendMode.TURN, BackendMode.LONG_LIVED)
    description = "Claude Code headless (claude -p, stream-json)"
    default_policy = PermissionPolicy.DENY
    """What ``ask`` from a persona or the default becomes where it cannot hold (turn mode)."""
    policies = POLICIES
    capabilities = Capabilities(
        resume=True,
        streamed_deltas=True,
        long_lived=True,
        tool_events=True,
        cost=True,
        permission_requests=True,
    )

    def locate(self) -> Located:
        return locate_executable(self.id, DEFAULT_COMMAND)

    def version(self, executable: str) -> str | None:
        return package_version(Path(executable), NPM_PACKAGE)

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        executable = self.locate().executable or DEFAULT_COMMAND
        resume = ["--resume", resume_id] if resume_id else []
        if spec.mode is BackendMode.LONG_LIVED:
            long_lived = ["--input-format", "stream-json", "--permission-prompt-tool", "stdio"]
            flags = [*STREAM_FLAGS, *resume, *_session_flags(spec), *_permission_flags(spec)]
            return [executable, "-p", *long_lived, *flags]
        # "--" ends the options, so a message that starts with "-" is still the prompt (and
        # the variadic --allowedTools cannot swallow it).
        turn = [*STREAM_FLAGS, *resume, *_session_flags(spec), *_permission_flags(spec)]
        return [executable, "-p", *turn, "--", message or ""]

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        """The turn with its prompt on stdin: ``claude -p`` without one reads stdin to EOF."""
        *argv, dashdash, prompt = self.argv(spec, "", resume_id)
        assert (dashdash, prompt) == ("--", ""), "a turn's argv ends with -- and the prompt"
        return StdinTurn(argv, message.encode())

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        if _skips_permissions(spec) and os.geteuid() == 0:
            return {"IS_SANDBOX": "1"}
        return {}

    def check_policy(self, spec: SessionSpec) -> None:
        """Refuse ``ask`` in turn mode (called once, at start): nobody can answer Claude
        in the middle of a ``claude -p`` turn."""
        if spec.mode is BackendMode.TURN and spec.permission_policy is PermissionPolicy.ASK:
            raise InvalidArgument(
                "the claude backend asks for permission only with --mode long_lived "
                "(a claude -p turn has nobody to ask); in turn mode use --policy deny "
                "(Claude refuses what allowed_tools do not allow) or --policy allow"
            )

    def driver(self, spec: SessionSpec) -> Driver:
        if spec.mode is BackendMode.LONG_LIVED:
            return ClaudeDriver(spec.permission_policy)
        # a result's cost is the process's running total (a turn's, in this mode)
        return ClaudeStreamParser(UsageScope.PROCESS)


def _session_flags(spec: SessionSpec) -> list[str]:
    """The flags that carry the persona: instructions, model and allowed tools."""
    flags = []
    if spec.instructions:
        flags += ["--append-system-prompt", spec.instructions]
    if spec.model:
        flags += ["--model", spec.model]
    if spec.allowed_tools:
        flags += ["--allowedTools", ",".join(spec.allowed_tools)]
    return flags


def _skips_permissions(spec: SessionSpec) -> bool:
    return spec.mode is BackendMode.TURN and spec.permission_policy is PermissionPolicy.ALLOW


def _permission_flags(spec: SessionSpec) -> list[str]:
    """The flags that make Claude itself hold the session's permission policy."""
    if _skips_permissions(spec):
        return ["--dangerously-skip-permissions"]
    if spec.permission_policy is not PermissionPolicy.DENY:
        return []
    flags = ["--permission-mode", "dontAsk"]
    tools = _tool_names(spec.allowed_tools)
    return [*flags, "--tools", ",".join(tools)] if tools else flags


def _tool_names(allowed_tools: tuple[str, ...]) -> list[str]:
    """The built-in tools ``allowed_tools`` name (``Bash(git *)`` names ``Bash``), in order.
    MCP tools (``mcp__…``) are not built in: ``--tools`` does not take them."""
    names = [tool.split("(", 1)[0].strip() for tool in allowed_tools]
    return list(dict.fromkeys(n for n in names if n and not n.startswith("mcp__")))
