"""The ``demo`` backend: an offline scripted agent that needs no vendor CLI and no network.

It runs :mod:`agentplex.plugins.demo_agent` with the current interpreter, one process per
turn, or in long-lived mode :mod:`agentplex.plugins.demo_live`, one process reading each
message on stdin as stream-json (the mode its panel members run in: a turn handed over is
a pipe write, not a Python start). It reads the output with the Claude stream-json parser,
so it exercises the same paths a real ``claude`` session does. The persona reaches it as it
reaches Claude (its instructions in ``--append-system-prompt``) and by name in
``AGENTPLEX_DEMO_PERSONA``, so that in a panel it answers in character
(:mod:`agentplex.plugins.demo_panel`).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

from agentplex.plugins.api import BackendMode, Capabilities, Located, SessionSpec, StdinTurn
from agentplex.plugins.stream_json import ClaudeStreamParser

DELAY_VARIABLE = "AGENTPLEX_DEMO_DELAY"
"""Seconds per typed word; passed on when the session's or the daemon's environment sets it."""
PASSED_ON = (
    DELAY_VARIABLE,
    "AGENTPLEX_DEMO_RECORD",
    "AGENTPLEX_DEMO_SEED",
    "AGENTPLEX_DEMO_COST",
    "AGENTPLEX_DEMO_LINGER",
)
"""Variables the agent reads, passed on from the session's or else the daemon's environment
(a test sets them on the daemon it starts)."""
PERSONA_VARIABLE = "AGENTPLEX_DEMO_PERSONA"
PANEL_MODE_VARIABLE = "AGENTPLEX_DEMO_PANEL_MODE"
"""The daemon's ``turn`` makes panel members run one process per turn (the benchmark's
comparison); default ``long_lived``."""

AGENT = (sys.executable, "-m", "agentplex.plugins.demo_agent")
LIVE_AGENT = (sys.executable, "-m", "agentplex.plugins.demo_live", "--input-format", "stream-json")
STREAM_FLAGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


class DemoBackend:
    """An offline agent that types a scripted reply and remembers the conversation."""

    id = "demo"
    modes = (BackendMode.TURN, BackendMode.LONG_LIVED)
    capabilities = Capabilities(resume=True, streamed_deltas=True, long_lived=True, cost=True)
    description = "Offline scripted agent speaking Claude's stream-json (no CLI or network)"

    def locate(self) -> Located:
        return Located(True, executable=sys.executable, version=self.version(sys.executable))

    def version(self, executable: str) -> str | None:
        try:
            return importlib.metadata.version("agentplex")
        except importlib.metadata.PackageNotFoundError:
            return None

    @property
    def panel_mode(self) -> BackendMode:
        """The mode a panel runs its members in (see ``PANEL_MODE_VARIABLE``)."""
        turn = os.environ.get(PANEL_MODE_VARIABLE) == BackendMode.TURN.value
        return BackendMode.TURN if turn else BackendMode.LONG_LIVED

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        if spec.mode is BackendMode.LONG_LIVED:
            argv = [*LIVE_AGENT, *STREAM_FLAGS, *persona_flags(spec)]
        else:
            argv = [*AGENT, "-p", message or "", *STREAM_FLAGS, *persona_flags(spec)]
        return [*argv, "--resume", resume_id] if resume_id else argv

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        # "-p" last and without a value: the agent reads its prompt from stdin, as Claude does.
        resume = ["--resume", resume_id] if resume_id else []
        argv = [*AGENT, *STREAM_FLAGS, *persona_flags(spec), *resume, "-p"]
        return StdinTurn(argv, message.encode())

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        home = (spec.scratch_dir / "demo").absolute()
        home.mkdir(parents=True, exist_ok=True)
        env = {"AGENTPLEX_DEMO_HOME": str(home)}
        for name in PASSED_ON:
            value = spec.env.get(name, os.environ.get(name))
            if value is not None:
                env[name] = value
        if spec.persona:
            env[PERSONA_VARIABLE] = spec.persona
        return env

    def driver(self, spec: SessionSpec) -> ClaudeStreamParser:
        return ClaudeStreamParser()


def persona_flags(spec: SessionSpec) -> list[str]:
    """The persona's instructions, as Claude takes them (given on every turn, as Claude's)."""
    return ["--append-system-prompt", spec.instructions] if spec.instructions else []
