"""The ``claude`` backend: Claude Code headless (``claude -p``, stream-json).

Turn mode (the default) runs one ``claude -p`` per turn and continues the conversation
with ``--resume <session_id>``; Claude keeps its transcripts per working directory, so a
session's turns all run in its one cwd. Long-lived mode runs one process that reads
stream-json ``user`` lines on stdin and speaks Claude's control protocol (see
:mod:`agentplex.plugins.claude_driver`).

Persona instructions go to ``--append-system-prompt`` (they add to Claude Code's own
system prompt instead of replacing it), the model to ``--model`` and the allowed tools to
``--allowedTools``.

Permission policies:

* Turn mode, ``allow``: ``--dangerously-skip-permissions``. Claude refuses that flag when
  run as root unless ``IS_SANDBOX=1``, so the backend sets it then (and only then: it also
  changes other behaviour of the CLI).
* Turn mode, ``ask`` or ``deny``: Claude's default permission behaviour. Nobody can be asked
  in the middle of a ``-p`` turn, so a tool use that needs permission (``touch x``, unlike
  ``echo x``) is refused by the CLI itself: it shows up as a ``tool_result`` chunk with
  ``is_error`` and the turn goes on.
* Long-lived mode, every policy: ``--permission-prompt-tool stdio``. Claude then asks the
  daemon; under ``ask`` the session waits in ``waiting_input`` for ``permit``, under
  ``allow`` and ``deny`` the driver answers at once.
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
    locate_executable,
    package_version,
)
from agentplex.plugins.claude_driver import ClaudeDriver
from agentplex.plugins.stream_json import ClaudeStreamParser

DEFAULT_COMMAND = "claude"
NPM_PACKAGE = "@anthropic-ai/claude-code"
STREAM_FLAGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


class ClaudeBackend:
    """Claude Code headless: one ``claude -p`` per turn, or one long-lived stream-json process."""

    id = "claude"
    modes = (BackendMode.TURN, BackendMode.LONG_LIVED)
    description = "Claude Code headless (claude -p, stream-json)"
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
            return [executable, "-p", *long_lived, *STREAM_FLAGS, *resume, *_session_flags(spec)]
        # "--" ends the options, so a message that starts with "-" is still the prompt (and
        # the variadic --allowedTools cannot swallow it).
        turn = [*STREAM_FLAGS, *resume, *_session_flags(spec), *_turn_permission_flags(spec)]
        return [executable, "-p", *turn, "--", message or ""]

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        if _skips_permissions(spec) and os.geteuid() == 0:
            return {"IS_SANDBOX": "1"}
        return {}

    def driver(self, spec: SessionSpec) -> Driver:
        if spec.mode is BackendMode.LONG_LIVED:
            return ClaudeDriver(spec.permission_policy)
        return ClaudeStreamParser()


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


def _turn_permission_flags(spec: SessionSpec) -> list[str]:
    return ["--dangerously-skip-permissions"] if _skips_permissions(spec) else []
