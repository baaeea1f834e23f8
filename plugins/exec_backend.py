"""The ``exec`` backend: any command, long-lived, fed line by line on its stdin."""

from __future__ import annotations

from agentplex.plugins.api import BackendMode, Located, OutputParser, PlainLines, SessionSpec


class ExecBackend:
    """Runs the command given after ``--``; every stdout/stderr line is a ``text`` chunk."""

    id = "exec"
    mode = BackendMode.LONG_LIVED
    description = "any command; each message is written to its stdin as a line"

    def locate(self) -> Located:
        return Located(True, problem=None)

    def argv(self, spec: SessionSpec, message: str | None, resume_id: str | None) -> list[str]:
        return list(spec.command)

    def environment(self, spec: SessionSpec) -> dict[str, str]:
        return {}

    def parser(self) -> OutputParser:
        return PlainLines()

    def encode_input(self, message: str) -> bytes:
        return message.encode() + b"\n"
