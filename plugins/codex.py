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

from pathlib import Path

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    Located,
    PermissionPolicy,
    SessionSpec,
    StdinTurn,
    locate_executable,
    package_version,
)
from agentplex.plugins.codex_events import CodexEventParser
from agentplex.protocol.errors import InvalidArgument

NPM_PACKAGE = "@openai/codex"
CREDENTIALS = ("CODEX_HOME", "CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")
"""What Codex authenticates with: where its config (model providers, base URLs), login
(``auth.json``) and threads live, and the key and endpoint of the OpenAI provider."""
PASSED_THROUGH = CREDENTIALS

ALLOW_SANDBOX = "workspace-write"
"""Codex's sandbox under permission policy ``allow``.

``allow`` lets the agent edit the project and run commands in it, but still inside Codex's
bubblewrap sandbox (no network, nothing outside the workspace):
``--dangerously-bypass-approvals-and-sandbox`` would drop that too, and without the sandbox
a command's children outlive a killed turn, while bubblewrap's ``--die-with-parent`` takes
them down with Codex.
"""
DENY_SANDBOX = "read-only"
"""Codex's sandbox under ``deny``: commands may read, every write and all network fail.

Given on the command line, not left to Codex's default, because the user's own
``config.toml`` (``sandbox_mode = "danger-full-access"`` is common) would otherwise decide.
"""
NEVER_ASK = 'approval_policy="never"'
"""Exec mode has nobody to ask: a command the sandbox refuses fails, it is never escalated
(whatever ``approval_policy`` the user's config sets)."""

POLICIES = {
    PermissionPolicy.ALLOW: f"commands and edits run unasked in the {ALLOW_SANDBOX} sandbox "
    "(the project only, no network)",
    PermissionPolicy.DENY: f"commands run in the {DENY_SANDBOX} sandbox (reads work; writes and "
    "network fail); allowed_tools has no Codex equivalent",
    PermissionPolicy.ASK: "refused: codex exec cannot ask (use deny or allow, or the acp "
    "backend with an agent that asks)",
}
"""What each permission policy does for Codex, for ``personas``, ``--help`` and the README."""


class CodexBackend:
    """OpenAI Codex CLI (codex exec --json)."""

    id = "codex"
    credentials = CREDENTIALS
    credential_files = ("~/.codex/auth.json",)
    modes = (BackendMode.TURN,)
    description = "OpenAI Codex CLI (codex exec --json)"
    capabilities = Capabilities(resume=True, tool_events=True)
    default_policy = PermissionPolicy.DENY
    """The policy of a session that names none: Codex exec cannot hold ``ask``."""
    policies = POLICIES

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

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        """The turn with its prompt on stdin: ``-`` for the prompt makes Codex read stdin."""
        *argv, dashdash, prompt = self.argv(spec, "", resume_id)
        assert (dashdash, prompt) == ("--", ""), "a turn's argv ends with -- and the prompt"
        return StdinTurn([*argv, "-"], message.encode())

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}  # its credentials are passed by the daemon

    def driver(self, spec: SessionSpec) -> CodexEventParser:
        return CodexEventParser()

    def check_policy(self, spec: SessionSpec) -> None:
        """Refuse a start under a policy Codex cannot hold (called once, at start)."""
        if spec.permission_policy is PermissionPolicy.ASK:
            raise InvalidArgument(
                "the codex backend cannot ask for permission: codex exec has no one to ask "
                "(its approvals need an interactive terminal); use --policy deny (read-only "
                "sandbox) or --policy allow (workspace-write sandbox)"
            )


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
    # A session recorded with ``ask`` before it was refused gets deny's sandbox: nobody
    # can be asked, so nothing outside the read-only sandbox may run.
    allow = spec.permission_policy is PermissionPolicy.ALLOW
    return [*options, "-s", ALLOW_SANDBOX if allow else DENY_SANDBOX, "-c", NEVER_ASK]


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
