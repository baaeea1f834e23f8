"""Locate the pinned agent CLIs and build isolated environments that point them at a fake.

The executables are installed by ``.ci/install-agent-clis`` into
``${AGENTPLEX_CLI_CACHE:-$HOME/.cache/agentplex/agent-clis}``. Each ``*_env`` function returns
the complete environment for one CLI (run it under an otherwise empty environment) and writes
the config files that CLI needs below ``home``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

API_KEY = "dummy"
CODEX_MODEL = "gpt-5.5"

_CLAUDE_PLATFORM_BINARIES = (
    "claude-code-linux-x64/claude",
    "claude-code-linux-x64-musl/claude",
    "claude-code-linux-arm64/claude",
    "claude-code-linux-arm64-musl/claude",
    "claude-code-darwin-arm64/claude",
    "claude-code-darwin-x64/claude",
)
_CODEX_BINARY_GLOBS = ("codex-*/vendor/*/bin/codex", "codex-*/vendor/*/codex/codex")


class AgentCliNotFoundError(FileNotFoundError):
    """Raised when a pinned agent CLI is not installed in the cache directory."""


def default_cache_dir() -> Path:
    """The cache directory that ``.ci/install-agent-clis`` installs into."""
    configured = os.environ.get("AGENTPLEX_CLI_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "agentplex" / "agent-clis"


def find_agent_clis(cache_dir: Path | None = None) -> dict[str, Path]:
    """Map ``claude``/``codex``/``gemini`` to their executables in ``cache_dir``.

    Claude and Codex are their native binaries (no Node wrapper); Gemini is the Node script.
    Raises :class:`AgentCliNotFoundError` naming what is missing and how to install it.
    """
    modules = (cache_dir or default_cache_dir()) / "node_modules"
    found = {
        "claude": _first_executable(
            modules / "@anthropic-ai" / p for p in _CLAUDE_PLATFORM_BINARIES
        ),
        "codex": _first_executable(
            p
            for pattern in _CODEX_BINARY_GLOBS
            for p in sorted((modules / "@openai").glob(pattern))
        ),
        "gemini": _first_executable([modules / ".bin" / "gemini"]),
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise AgentCliNotFoundError(
            f"agent CLI(s) {', '.join(missing)} not found under {modules}; "
            "run .ci/install-agent-clis (or set AGENTPLEX_CLI_CACHE)"
        )
    return {name: path for name, path in found.items() if path is not None}


def _first_executable(candidates: Iterable[Path]) -> Path | None:
    """The first regular, executable file among ``candidates``, as an absolute path."""
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    return None


def minimal_path() -> str:
    """A PATH with node's directory and the system directories (bash, coreutils)."""
    node = shutil.which("node")
    dirs = [str(Path(node).resolve().parent)] if node else []
    dirs += [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d not in dirs]
    return ":".join(dirs)


def _base_env(home: Path) -> dict[str, str]:
    """Variables every CLI needs: an isolated HOME (created) and a minimal PATH."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": minimal_path()}


def claude_env(home: Path, base_url: str, max_retries: int = 0) -> dict[str, str]:
    """Environment for Claude Code talking to a fake Anthropic API at ``base_url``."""
    return {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }


def codex_env(home: Path, base_url: str) -> dict[str, str]:
    """Environment for Codex talking to a fake Responses API; writes ``$CODEX_HOME/config.toml``."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url))
    return {
        **_base_env(home),
        "CODEX_HOME": str(codex_home),
        "FAKE_OPENAI_API_KEY": API_KEY,
    }


def codex_config(base_url: str) -> str:
    """The ``config.toml`` that routes Codex to ``<base_url>/v1`` with retries off."""
    return f"""\
model = "{CODEX_MODEL}"
model_provider = "fake"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.fake]
name = "Fake OpenAI (loopback)"
base_url = "{base_url}/v1"
env_key = "FAKE_OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def gemini_env(home: Path, base_url: str) -> dict[str, str]:
    """Environment for Gemini CLI talking to a fake Gemini API; writes its settings.json."""
    settings_dir = home / ".gemini"
    settings_dir.mkdir(parents=True, exist_ok=True)
    (settings_dir / "settings.json").write_text(json.dumps(gemini_settings(), indent=2))
    return {
        **_base_env(home),
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_CLI_NO_RELAUNCH": "true",
    }


def gemini_settings() -> dict[str, object]:
    """Settings that select API-key auth (so the base URL works headless) and one attempt."""
    return {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"maxAttempts": 1},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
