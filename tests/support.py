"""Test helpers: a real daemon in its own process, waiting on events, finding processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription

READY_TIMEOUT = 20.0


@dataclass
class DaemonProcess:
    """A daemon started by a test, and what the test needs to talk to it."""

    process: subprocess.Popen[str]
    runtime_dir: Path
    state_dir: Path
    log_lines: list[dict[str, object]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    log_done: threading.Event = field(default_factory=threading.Event)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a CLI command aimed at this daemon."""
        return dict(
            os.environ,
            AGENTPLEX_RUNTIME_DIR=str(self.runtime_dir),
            AGENTPLEX_STATE_DIR=str(self.state_dir),
        )

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.runtime_dir, timeout=timeout)

    def cli(
        self, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``agentplex ARGS`` against this daemon."""
        return subprocess.run(
            [sys.executable, "-m", "agentplex.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the daemon and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.log_done.wait(timeout)
        return code

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"event": "unparsed", "line": line.rstrip()}
            self.log_lines.append(record)
            if record.get("event") == "daemon_ready":
                self.ready.set()
        self.process.stderr.close()
        self.ready.set()
        self.log_done.set()


def start_daemon(
    base: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
) -> DaemonProcess:
    """Start ``agentplex daemon`` with dirs under ``base``; return once it is ready.

    ``env`` adds variables to the daemon's environment (e.g. ``AGENTPLEX_CLAUDE_CLI``);
    ``wrapper`` is a command that execs the daemon (e.g. ``prlimit --fsize=N``).
    """
    runtime_dir, state_dir = base / "run", base / "state"
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(runtime_dir),
        AGENTPLEX_STATE_DIR=str(state_dir),
        AGENTPLEX_DEMO_DELAY="0.002",
        **(env or {}),
    )
    process = subprocess.Popen(
        [
            *(wrapper or []),
            sys.executable,
            "-m",
            "agentplex.cli.main",
            "daemon",
            "--log-format",
            "json",
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = DaemonProcess(process, runtime_dir, state_dir)
    threading.Thread(target=daemon._read_log, daemon=True).start()
    if not daemon.ready.wait(READY_TIMEOUT) or process.poll() is not None:
        process.kill()
        raise RuntimeError(f"daemon did not become ready: {daemon.log_lines}")
    return daemon


def next_event(
    events: SyncSubscription, predicate: Callable[[p.Event], bool], timeout: float = 20.0
) -> p.Event:
    """The first event that satisfies ``predicate``, failing the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = events.receive(left)
        if event is not None and predicate(event):
            return event
    raise AssertionError(f"no matching event within {timeout} s")


def is_chunk(
    session_id: str, kind: p.ChunkKind | None = None, text: str | None = None
) -> Callable[[p.Event], bool]:
    """A predicate for ``next_event``: a chunk of this session (of this kind, containing text)."""

    def match(event: p.Event) -> bool:
        return (
            isinstance(event, p.Chunk)
            and event.session_id == session_id
            and (kind is None or event.kind == kind)
            and (text is None or text in event.text)
        )

    return match


def descendants_with_marker(session_id: str) -> list[psutil.Process]:
    """Every live, non-zombie process on the machine that carries a session's marker."""
    found = []
    marker = f"AGENTPLEX_SESSION_ID={session_id}".encode()
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(proc)
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


REPO = Path(__file__).resolve().parent.parent


def install_agent_clis() -> dict[str, Path]:
    """Install the pinned real agent CLIs from npm into the cache (once) and return their
    executables by backend id: ``claude``, ``codex``, ``gemini``."""
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "install-agent-clis")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing the agent CLIs failed:\n{done.stderr[-3000:]}")
    paths = {}
    for line in done.stdout.splitlines():
        name, sep, path = line.partition("=")
        if sep and name in ("claude", "codex", "gemini"):
            paths[name] = Path(path)
    return paths


def session_info(session_id: str = "s1", **fields: Any) -> p.SessionInfo:
    """A SessionInfo for unit tests: a running exec session unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "id": session_id,
        "backend": "exec",
        "persona": None,
        "tag": None,
        "cwd": "/",
        "status": p.SessionStatus.RUNNING,
        "created_at": 0.0,
        "pid": None,
        "cli_session_id": None,
        "turns": 0,
        "chunks": 0,
        "transcript": "/t.jsonl",
    }
    return p.SessionInfo(**{**values, **fields})


CLI_TIMEOUT = 30.0
"""How long one ``agentplex`` command of a test may take."""


def became(session_id: str, status: p.SessionStatus) -> Callable[[p.Event], bool]:
    """An event predicate: the session's status changed to ``status``."""

    def match(event: p.Event) -> bool:
        return (
            isinstance(event, p.StatusChanged)
            and event.session_id == session_id
            and event.status is status
        )

    return match


def ok(daemon: DaemonProcess, *args: str) -> str:
    """Run ``agentplex ARGS``; it must succeed and say nothing on stderr. Returns stdout."""
    done = daemon.cli(*args, timeout=CLI_TIMEOUT)
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def fails(done: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """A failed command: nothing on stdout, ONE ``agentplex ...`` line on stderr."""
    assert done.returncode == exit_code, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agentplex "), lines[0]
    return lines[0]


def leftovers(tmp: Path) -> list[str]:
    """Live processes whose command line or working dir is inside ``tmp``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if str(tmp) in text:
            found.append(f"{proc.pid}: {text}")
    return found
