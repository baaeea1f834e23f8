"""The ``demo`` backend: an offline scripted agent that needs no vendor CLI and no network.

It runs :mod:`agentplex.plugins.demo_agent` with the current interpreter, one process per
turn, and reads its output with the Claude stream-json parser, so it exercises the same
paths a real ``claude`` session does.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

from agentplex.plugins.api import BackendMode, Capabilities, Located, SessionSpec, StdinTurn
from agentplex.plugins.stream_json import ClaudeStreamParser

DELAY_VARIABLE = "AGENTPLEX_DEMO_DELAY"
"""Seconds per typed word; passed on when the session's or the daemon's environment sets it."""

AGENT = (sys.executable, "-m", "agentplex.plugins.demo_agent")
STREAM_FLAGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


class DemoBackend:
    """An offline agent that types a scripted reply and remembers the conversation."""

    id = "demo"
    modes = (BackendMode.TURN,)
    capabilities = Capabilities(resume=True, streamed_deltas=True, cost=True)
    description = "Offline scripted agent speaking Claude's stream-json (no CLI or network)"

    def locate(self) -> Located:
        return Located(True, executable=sys.executable, version=self.version(sys.executable))

    def version(self, executable: str) -> str | None:
        try:
            return importlib.metadata.version("agentplex")
        except importlib.metadata.PackageNotFoundError:
            return None

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        argv = [*AGENT, "-p", message or "", *STREAM_FLAGS]
        return [*argv, "--resume", resume_id] if resume_id else argv

    def stdin_turn(self, spec: SessionSpec, message: str, resume_id: str | None) -> StdinTurn:
        # "-p" last and without a value: the agent reads its prompt from stdin, as Claude does.
        resume = ["--resume", resume_id] if resume_id else []
        return StdinTurn([*AGENT, *STREAM_FLAGS, *resume, "-p"], message.encode())

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        home = (spec.scratch_dir / "demo").absolute()
        home.mkdir(parents=True, exist_ok=True)
        env = {"AGENTPLEX_DEMO_HOME": str(home)}
        delay = spec.env.get(DELAY_VARIABLE, os.environ.get(DELAY_VARIABLE))
        if delay is not None:
            env[DELAY_VARIABLE] = delay
        return env

    def driver(self, spec: SessionSpec) -> ClaudeStreamParser:
        return ClaudeStreamParser()
