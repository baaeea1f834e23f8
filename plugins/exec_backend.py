"""The ``exec`` backend: any command, long-lived, fed line by line on its stdin."""

from __future__ import annotations

from agentplex.plugins.api import (
    BackendMode,
    Capabilities,
    Driver,
    Located,
    SessionSpec,
)


class ExecBackend:
    """Runs the command given after ``--``; every stdout/stderr line is a ``text`` chunk."""

    id = "exec"
    modes = (BackendMode.LONG_LIVED,)
    description = "any command; each message is written to its stdin as a line"
    capabilities = Capabilities(long_lived=True)

    def locate(self) -> Located:
        return Located(True)

    def version(self, executable: str) -> str | None:
        return None

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        return list(spec.command)

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}

    def driver(self, spec: SessionSpec) -> Driver:
        return Driver()
