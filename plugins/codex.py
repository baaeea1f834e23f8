"""The ``codex``backend: OpenAI Codex CLI (codex exec --json). (Being written.)"""

from __future__ import annotations

from agentplex.plugins.api import BackendMode, Capabilities, Driver, Located, SessionSpec


class CodexBackend:
    """OpenAI Codex CLI (codex exec --json)."""

    id = "codex"
    modes = (BackendMode.TURN,)
    description = "OpenAI Codex CLI (codex exec --json)"
    capabilities = Capabilities()

    def locate(self) -> Located:
        return Located(False, problem="not implemented yet")

    def version(self, executable: str) -> str | None:
        return None

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        return []

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}

    def driver(self, spec: SessionSpec) -> Driver:
        return Driver()
