"""The ``acp``backend: any Agent Client Protocol agent (JSON-RPC over stdio). (Being written.)"""

from __future__ import annotations

from agentplex.plugins.api import BackendMode, Capabilities, Driver, Located, SessionSpec


class AcpBackend:
    """any Agent Client Protocol agent (JSON-RPC over stdio)."""

    id = "acp"
    modes = (BackendMode.TURN,)
    description = "any Agent Client Protocol agent (JSON-RPC over stdio)"
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
