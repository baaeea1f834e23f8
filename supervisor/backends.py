"""BackendRegistry: backend plugins by id, built-in ones plus the entry-point group."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points

import structlog

from agentplex.plugins.acp_backend import AcpBackend
from agentplex.plugins.api import Backend
from agentplex.plugins.claude import ClaudeBackend
from agentplex.plugins.codex import CodexBackend
from agentplex.plugins.demo import DemoBackend
from agentplex.plugins.exec_backend import ExecBackend
from agentplex.plugins.gemini import GeminiBackend
from agentplex.protocol import BackendInfo
from agentplex.protocol.errors import UnknownBackend
from agentplex.supervisor import credentials
from agentplex.supervisor.config import Config

ENTRY_POINT_GROUP = "agentplex.backends"

log = structlog.get_logger(__name__)


class BackendRegistry:
    """Holds backend plugins by their id."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    @classmethod
    def with_defaults(cls) -> BackendRegistry:
        """The built-in backends plus every installed ``agentplex.backends`` plugin."""
        registry = cls()
        builtins: tuple[Backend, ...] = (
            ExecBackend(),
            DemoBackend(),
            ClaudeBackend(),
            CodexBackend(),
            GeminiBackend(),
            AcpBackend(),
        )
        for backend in builtins:
            registry.register(backend)
        registry.load_entry_points()
        return registry

    def register(self, backend: Backend) -> None:
        """Add a backend; a later registration under the same id replaces the earlier."""
        self._backends[backend.id] = backend

    def load_entry_points(self) -> None:
        """Register each plugin of the entry-point group; a broken one is logged and skipped."""
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                backend = entry.load()()
            except Exception as exc:  # a third-party plugin must not stop the daemon
                log.error("backend_plugin_failed", entry_point=entry.value, error=repr(exc))
                continue
            if not isinstance(backend, Backend):
                log.error("backend_plugin_invalid", entry_point=entry.value)
                continue
            self.register(backend)

    def get(self, backend_id: str) -> Backend:
        """The backend registered as ``backend_id``."""
        try:
            return self._backends[backend_id]
        except KeyError:
            known = ", ".join(sorted(self._backends))
            raise UnknownBackend(f"unknown backend {backend_id!r} (known: {known})") from None

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())

    def __len__(self) -> int:
        return len(self._backends)

    def describe(
        self, config: Config | None = None, daemon_env: Mapping[str, str] | None = None
    ) -> list[BackendInfo]:
        """What ``agentplex backends`` shows: each backend, whether its CLI was found, and
        which of its credentials a session would get (from ``daemon_env``, by default the
        daemon's environment and env file)."""
        config = config or Config()
        if daemon_env is None:
            daemon_env = credentials.daemon_environment(config)
        infos = []
        for backend in self:
            found = backend.locate()
            version = found.version
            if version is None and found.executable:
                version = backend.version(found.executable)
            infos.append(
                BackendInfo(
                    id=backend.id,
                    modes=[mode.value for mode in backend.modes],
                    description=backend.description,
                    available=found.available,
                    capabilities=[
                        name for name, on in dataclasses.asdict(backend.capabilities).items() if on
                    ],
                    executable=found.executable,
                    version=version,
                    problem=found.problem,
                    credentials=list(credentials.declared(backend)),
                    credentials_found=credentials.found(backend, config, daemon_env),
                    policies=policy_descriptions(backend),
                )
            )
        return infos


GENERIC_POLICIES: dict[str, str] = {
    "ask": "each permission request the agent makes waits in waiting_input for `permit`",
    "allow": "the daemon answers every permission request the agent makes: yes",
    "deny": "the daemon answers every permission request the agent makes: no",
}
"""What the policies mean for a backend whose agent asks the daemon (demo, ACP agents)."""


def policy_descriptions(backend: Backend) -> dict[str, str]:
    """What each permission policy does with ``backend``: its own words (a ``policies``
    mapping, as the Claude, Codex and Gemini backends declare), else the daemon's answers to
    its agent's requests, else that its agents never ask."""
    declared = getattr(backend, "policies", None)
    if isinstance(declared, Mapping):
        return {str(getattr(k, "value", k)): str(v) for k, v in declared.items()}
    if backend.capabilities.permission_requests:
        return dict(GENERIC_POLICIES)
    never = "its agents make no permission requests: the policy changes nothing"
    return dict.fromkeys(GENERIC_POLICIES, never)
