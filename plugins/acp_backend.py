"""The ``acp`` backend: the ACP agent command given after ``--``, run as one long-lived
process and driven by :class:`~agentplex.plugins.acp.AcpDriver`."""

from __future__ import annotations

import os
from pathlib import PurePath

from agentplex.plugins.acp import AcpDriver
from agentplex.plugins.api import BackendMode, Capabilities, Driver, Located, SessionSpec
from agentplex.plugins.gemini_lock import clear_orphaned_lock, gemini_home


class AcpBackend:
    """Runs the ACP agent command given after ``--`` as one long-lived process."""

    id = "acp"
    modes = (BackendMode.LONG_LIVED,)
    description = "any Agent Client Protocol agent (JSON-RPC over stdio), e.g. -- gemini --acp"
    capabilities = Capabilities(
        long_lived=True, streamed_deltas=True, tool_events=True, permission_requests=True
    )

    def locate(self) -> Located:
        # The command varies per session, so there is nothing to find up front.
        return Located(True)

    def version(self, executable: str) -> str | None:
        return None

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        if spec.command and PurePath(spec.command[0]).name == "gemini":
            # `gemini --acp` waits on a lock an earlier Gemini died holding, as the gemini
            # backend's turns would (see gemini_lock): cleared the same way.
            home = gemini_home(spec.env) or gemini_home(os.environ)
            if home is not None:
                clear_orphaned_lock(home)
        return list(spec.command)

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}

    def driver(self, spec: SessionSpec) -> Driver:
        return AcpDriver(spec)
