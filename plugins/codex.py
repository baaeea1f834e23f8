"""The ``codex`` backend: OpenAI Codex CLI, one ``codex exec --json`` process per turn.

A turn is ``codex exec --json --skip-git-repo-check [options] -- <message>``; the next one
continues the thread with ``codex exec … [options] resume <thread_id> -- <message>``. The
options go before ``resume`` because its own parser refuses some of them (``-s``), while
the ``exec`` parser applies them to the resumed thread too. ``--`` keeps a message that
starts with ``-`` (or is the word ``resume``) from being read as a flag or a subcommand.

Codex reads stdin when it is not a terminal; the daemon gives turn processes /dev/null, so
it reads nothing ("Reading additional input from stdin..." on stderr is harmless).
"""

from __future__ import annotations

import os
from pathlib import Path

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    Located,
    PermissionPolicy,
    SessionSpec,
    locate_executable,
    package_version,
)
from agentplex.plugins.codex_events import CodexEventParser

NPM_PACKAGE = "@openai/codex"
PASSED_THROUGH = ("CODEX_HOME", "CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")
"""Daemon variables Codex needs that the daemon's allowlist leaves out: where its config,
login and threads live, and the credentials and endpoint of the built-in OpenAI provider."""

ALLOW_SANDBOX = "workspace-write"
"""Codex's sandbox under permission policy ``allow``.

Exec mode cannot ask anyone, so ``ask`` and ``deny`` keep Codex's default read-only sandbox
(commands run, writes fail). ``allow`` lets the agent edit the project and run commands in
it, but still inside Codex's bubblewrap sandbox (no network, nothing outside the workspace):
``--dangerously-bypass-approvals-and-sandbox`` would drop that too, and without the sandbox
a command's children outlive a killed turn, while bubblewrap's ``--die-with-parent`` takes
them down with Codex.
"""


class CodexBackend:
    """OpenAI Codex CLI (codex exec --json)."""

    id = "codex"
    modes = (BackendMode.TURN,)
    description = "OpenAI Codex CLI (codex exec --json)"
    capabilities = Capabilities(resume=True, tool_events=True)

    def locate(self) -> Located:
        return locate_executable(self.id, "codex")

    def version(self, executable: str) -> str | None:
        return package_version(Path(executable), NPM_PACKAGE)

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        executable = self.locate().executable or "codex"
        argv = [executable, "exec", "--json", "--skip-git-repo-check", *_options(spec)]
        if resume_id:
            argv += ["resume", resume_id]
        return [*argv, "--", message or ""]

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}

    def driver(self, spec: SessionSpec) -> CodexEventParser:
        return CodexEventParser()


def _options(spec: SessionSpec) -> list[str]:
    """The flags that carry the session's model, persona and permission policy.

    They are given on every turn, the resumed ones included. Codex keeps the persona's
    ``developer_instructions`` in the thread's history and does not add them twice.
    """
    options = []
    if spec.model:
        options += ["-m", spec.model]
    if spec.instructions:
        options += ["-c", f"developer_instructions={toml_string(spec.instructions)}"]
    if spec.permission_policy is PermissionPolicy.ALLOW:
        options += ["-s", ALLOW_SANDBOX]
    return options


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, the form ``-c key=value`` parses as TOML.

    Quotes, backslashes and every control character but tab are escaped, as TOML requires;
    the rest (non-ASCII included) stays as it is.
    """
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif (char < " " and char != "\t") or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
