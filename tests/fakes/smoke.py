"""Smoke test: drive the real agent CLIs against the fake model APIs.

Usage (after ``.ci/install-agent-clis``)::

    python tests/fakes/smoke.py [--cache-dir DIR] [--only claude,codex,gemini]

For each CLI, under an empty environment plus the helper's variables, it checks: a first turn,
a resumed second turn (the fake must see turn 1 in turn 2's request), a shell tool round trip,
an HTTP 500, a hanging request killed with SIGTERM, and a slow stream interrupted with SIGINT.
It prints every JSONL line the CLIs write and PASS/FAIL per check; exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for `python tests/fakes/smoke.py`

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.clis import (
    claude_env,
    codex_env,
    default_cache_dir,
    find_agent_clis,
    gemini_env,
)
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_responses import FakeOpenAIResponses
from tests.fakes.server import SLOW_DELAY_S, SLOW_DELTAS, FakeServer

Line = dict[str, Any]
RUN_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 5.0
TOOL_WORD = "smoke-tool-ok"


# --------------------------------------------------------------------------- running CLIs


@dataclass(frozen=True)
class Run:
    """One finished CLI invocation."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[Line]:
        """The JSON objects among the stdout lines."""
        return [json.loads(s) for s in self.stdout.splitlines() if s.startswith("{")]

    def show(self) -> None:
        """Print the command, every stdout line, the exit code and the wall time."""
        print(f"  $ {Path(self.argv[0]).name} {' '.join(self.argv[1:])}")
        for text in self.stdout.splitlines():
            print(f"    {text}")
        print(f"    -> exit {self.returncode} in {self.seconds:.2f} s")


@dataclass
class Workspace:
    """An isolated HOME and project dir for one CLI, pointed at one running fake."""

    exe: Path
    cwd: Path
    env: dict[str, str]

    def run(self, argv: list[str]) -> Run:
        """Run the CLI to completion with stdin from /dev/null."""
        start = time.monotonic()
        proc = subprocess.run(
            [str(self.exe), *argv],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        return Run(
            [str(self.exe), *argv],
            proc.returncode,
            proc.stdout,
            proc.stderr,
            time.monotonic() - start,
        )

    def run_and_signal(self, argv: list[str], wait: Callable[[], None], sig: signal.Signals) -> Run:
        """Start the CLI in its own session, call ``wait()``, send ``sig`` to it, collect it.

        If ``wait()`` times out or the CLI outlives the signal, it is SIGKILLed (exit -9).
        """
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(self.exe), *argv],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait()
            os.killpg(proc.pid, sig)
            stdout, stderr = proc.communicate(timeout=EXIT_TIMEOUT_S)
        except (TimeoutError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)  # shows up as exit -9 and fails the check
            stdout, stderr = proc.communicate()
        return Run(
            [str(self.exe), *argv], proc.returncode, stdout, stderr, time.monotonic() - start
        )


# --------------------------------------------------------------------------- the three CLIs


class Agent(ABC):
    """How to drive one CLI and read its JSONL output (one subclass per CLI)."""

    name: ClassVar[str]
    fake_class: ClassVar[type[FakeServer]]

    @abstractmethod
    def env(self, home: Path, base_url: str) -> dict[str, str]:
        """The CLI's isolated environment."""

    @abstractmethod
    def argv(self, prompt: str, resume: str | None = None, tools: bool = False) -> list[str]:
        """Arguments for one headless turn (optionally resuming a session, with shell tools)."""

    @abstractmethod
    def session_id(self, lines: list[Line]) -> str | None:
        """The session/thread id announced in the output."""

    @abstractmethod
    def reply_text(self, lines: list[Line]) -> str:
        """All assistant text of the output, concatenated."""

    @abstractmethod
    def succeeded(self, run: Run) -> bool:
        """Whether the turn completed successfully."""

    @abstractmethod
    def reported_error(self, run: Run) -> bool:
        """Whether the output ends the turn with an error line."""


class Claude(Agent):
    name = "claude"
    fake_class = FakeAnthropic

    def env(self, home: Path, base_url: str) -> dict[str, str]:
        return claude_env(home, base_url)

    def argv(self, prompt: str, resume: str | None = None, tools: bool = False) -> list[str]:
        argv = ["-p", prompt, "--output-format", "stream-json", "--verbose"]
        argv += ["--allowedTools", "Bash"] if tools else []
        return argv + (["--resume", resume] if resume else [])

    def session_id(self, lines: list[Line]) -> str | None:
        return next((ln["session_id"] for ln in lines if ln.get("subtype") == "init"), None)

    def reply_text(self, lines: list[Line]) -> str:
        blocks = [
            b for ln in lines if ln.get("type") == "assistant" for b in ln["message"]["content"]
        ]
        return "".join(b["text"] for b in blocks if b.get("type") == "text")

    def succeeded(self, run: Run) -> bool:
        results = [ln for ln in run.lines if ln.get("type") == "result"]
        return run.returncode == 0 and bool(results) and not results[-1]["is_error"]

    def reported_error(self, run: Run) -> bool:
        return any(ln.get("type") == "result" and ln.get("is_error") for ln in run.lines)


class Codex(Agent):
    name = "codex"
    fake_class = FakeOpenAIResponses

    def env(self, home: Path, base_url: str) -> dict[str, str]:
        return codex_env(home, base_url)

    def argv(self, prompt: str, resume: str | None = None, tools: bool = False) -> list[str]:
        # Tools need no flag: `echo` runs inside the default read-only bwrap sandbox.
        argv = ["exec", "--json", "--skip-git-repo-check"]
        return argv + (["resume", resume, prompt] if resume else [prompt])

    def session_id(self, lines: list[Line]) -> str | None:
        return next((ln["thread_id"] for ln in lines if ln.get("type") == "thread.started"), None)

    def reply_text(self, lines: list[Line]) -> str:
        items = [ln["item"] for ln in lines if ln.get("type") == "item.completed"]
        return "".join(i["text"] for i in items if i.get("type") == "agent_message")

    def succeeded(self, run: Run) -> bool:
        return run.returncode == 0 and any(ln.get("type") == "turn.completed" for ln in run.lines)

    def reported_error(self, run: Run) -> bool:
        return any(ln.get("type") == "turn.failed" for ln in run.lines)


class Gemini(Agent):
    name = "gemini"
    fake_class = FakeGemini

    def env(self, home: Path, base_url: str) -> dict[str, str]:
        return gemini_env(home, base_url)

    def argv(self, prompt: str, resume: str | None = None, tools: bool = False) -> list[str]:
        argv = ["--skip-trust", "-m", "gemini-2.5-flash", "--output-format", "stream-json"]
        argv += ["--yolo"] if tools else []
        argv += ["--resume", resume] if resume else []
        return [*argv, "-p", prompt]

    def session_id(self, lines: list[Line]) -> str | None:
        return next((ln["session_id"] for ln in lines if ln.get("type") == "init"), None)

    def reply_text(self, lines: list[Line]) -> str:
        return "".join(
            ln["content"]
            for ln in lines
            if ln.get("type") == "message" and ln.get("role") == "assistant"
        )

    def succeeded(self, run: Run) -> bool:
        results = [ln for ln in run.lines if ln.get("type") == "result"]
        return run.returncode == 0 and bool(results) and results[-1]["status"] == "success"

    def reported_error(self, run: Run) -> bool:
        return any(ln.get("type") == "result" and ln.get("status") == "error" for ln in run.lines)


AGENTS: tuple[Agent, ...] = (Claude(), Codex(), Gemini())


# --------------------------------------------------------------------------- checks


@dataclass
class Report:
    """PASS/FAIL bookkeeping."""

    passed: int = 0
    failed: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record and print one check."""
        print(f"{'PASS' if ok else 'FAIL'} {name}{f': {detail}' if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
        return ok


@dataclass
class Smoke:
    """The checks for one CLI against its fake."""

    agent: Agent
    fake: FakeServer
    space: Workspace
    report: Report

    def run_all(self) -> None:
        """First turn, resume, tool round trip, HTTP 500, hang + SIGTERM, slow + SIGINT."""
        session = self.first_turn()
        if session:
            self.resume(session)
        self.tool_round_trip()
        self.http_500()
        self.hang_then_kill()
        self.slow_then_interrupt()

    def _label(self, what: str) -> str:
        return f"{self.agent.name}: {what}"

    def _turn(self, prompt: str, resume: str | None = None, tools: bool = False) -> Run:
        run = self.space.run(self.agent.argv(prompt, resume, tools))
        run.show()
        if run.returncode != 0 and run.stderr.strip():
            print("    stderr (tail):", *run.stderr.splitlines()[-8:], sep="\n      ")
        return run

    def first_turn(self) -> str | None:
        """A new session answers "(turn 1)"; returns its session id."""
        run = self._turn("say hello")
        reply, session = self.agent.reply_text(run.lines), self.agent.session_id(run.lines)
        ok = self.agent.succeeded(run) and "You said: say hello (turn 1)" in reply and bool(session)
        self.report.check(self._label("first turn"), ok, f"{run.seconds:.2f} s, reply {reply!r}")
        return session if ok else None

    def resume(self, session: str) -> None:
        """The resumed turn keeps the id and sends turn 1's prompt and reply to the model."""
        run = self._turn("again", resume=session)
        reply = self.agent.reply_text(run.lines)
        ok = self.agent.succeeded(run) and "You said: again (turn 2)" in reply
        self.report.check(self._label("resume"), ok, f"{run.seconds:.2f} s, reply {reply!r}")
        same = self.agent.session_id(run.lines) in (session, None)
        self.report.check(self._label("resume keeps the session id"), same)
        history = self.fake.visible_text(self.fake.model_requests()[-1])
        wanted = [
            "user: say hello",
            f"assistant: Hello from fake {self.fake.vendor}! You said: say hello (turn 1)",
            "user: again",
        ]
        missing = [w for w in wanted if w not in history]
        self.report.check(
            self._label("turn 2 request carries turn 1"),
            not missing,
            f"missing {missing}" if missing else "",
        )

    def tool_round_trip(self) -> None:
        """RUN_TOOL makes the CLI run a shell command and send its output back."""
        run = self._turn(f"RUN_TOOL echo {TOOL_WORD}", tools=True)
        reply = self.agent.reply_text(run.lines)
        ok = self.agent.succeeded(run) and f"Tool said: {TOOL_WORD}" in reply
        self.report.check(
            self._label("tool round trip"), ok, f"{run.seconds:.2f} s, reply {reply!r}"
        )
        results = [
            m
            for r in self.fake.model_requests()
            for m in self.fake.transcript(r)
            if m.role == "tool_result"
        ]
        self.report.check(
            self._label("fake saw the tool result"),
            any(m.text == TOOL_WORD for m in results),
            f"{[m.text for m in results]}",
        )

    def http_500(self) -> None:
        """FAIL500 ends the turn with an error line and a non-zero exit."""
        run = self._turn("FAIL500 please")
        ok = run.returncode != 0 and self.agent.reported_error(run)
        self.report.check(
            self._label("HTTP 500 is reported"), ok, f"exit {run.returncode}, {run.seconds:.2f} s"
        )

    def hang_then_kill(self) -> None:
        """HANG never answers; SIGTERM to the process group ends the CLI promptly."""
        run = self.space.run_and_signal(
            self.agent.argv("HANG please"),
            lambda: self._wait_for_prompt("HANG please"),
            signal.SIGTERM,
        )
        run.show()
        self.report.check(
            self._label("HANG + SIGTERM"),
            run.returncode != -signal.SIGKILL,
            f"exit {run.returncode}, {run.seconds:.2f} s",
        )

    def slow_then_interrupt(self) -> None:
        """SLOW streams for about 4 s; SIGINT one second in stops the CLI before the end."""

        def wait() -> None:
            self._wait_for_prompt("SLOW please")
            time.sleep(1.0)

        run = self.space.run_and_signal(self.agent.argv("SLOW please"), wait, signal.SIGINT)
        run.show()
        full_stream = SLOW_DELTAS * SLOW_DELAY_S
        finished = "(turn 1)" in self.agent.reply_text(run.lines)
        self.report.check(
            self._label("SLOW + SIGINT mid-stream"),
            run.returncode != -signal.SIGKILL and not finished,
            f"exit {run.returncode}, {run.seconds:.2f} s (full stream {full_stream:.1f} s)",
        )

    def _wait_for_prompt(self, prompt: str) -> None:
        """Block until the fake has received a turn request whose last prompt is ``prompt``."""

        def seen(requests: list[Any]) -> bool:
            return any(
                self.fake.is_turn_request(r) and self.fake.conversation(r).prompts[-1:] == [prompt]
                for r in requests
            )

        self.fake.wait_for_requests(seen, timeout=RUN_TIMEOUT_S / 2)


# --------------------------------------------------------------------------- main


def smoke_agent(agent: Agent, exe: Path, report: Report) -> None:
    """Run every check for one CLI in a fresh temporary HOME and project."""
    print(f"\n=== {agent.name} ({exe})", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix=f"smoke-{agent.name}-") as tmp,
        agent.fake_class() as fake,
    ):
        cwd = Path(tmp) / "project"
        cwd.mkdir()
        space = Workspace(exe, cwd, agent.env(Path(tmp) / "home", fake.url))
        Smoke(agent, fake, space, report).run_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument(
        "--only",
        default=",".join(a.name for a in AGENTS),
        help="comma-separated subset of: claude,codex,gemini",
    )
    args = parser.parse_args(argv)
    clis = find_agent_clis(args.cache_dir)
    wanted = set(args.only.split(","))
    report = Report()
    for agent in AGENTS:
        if agent.name in wanted:
            smoke_agent(agent, clis[agent.name], report)
    print(f"\n{report.passed} passed, {len(report.failed)} failed")
    for name in report.failed:
        print(f"  FAILED {name}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
