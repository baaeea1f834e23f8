"""The orphaned Gemini project-registry lock: removed when no Gemini process of that home is
alive, kept while one is. The processes are real ones, named for Gemini with ``exec -a``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentplex.plugins.acp_backend import AcpBackend
from agentplex.plugins.api import SessionSpec
from agentplex.plugins.gemini_lock import REGISTRY_LOCK, clear_orphaned_lock, gemini_home

START_TIMEOUT = 30.0
"""Generous: bash exec'ing sleep on a loaded machine."""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A Gemini home holding the lock directory a Gemini process left behind."""
    (tmp_path / "home" / REGISTRY_LOCK).mkdir(parents=True)
    return tmp_path / "home"


@contextmanager
def running_gemini(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line names Gemini, with ``home`` as its HOME."""
    process = subprocess.Popen(
        ["bash", "-c", "exec -a gemini-lock-holder sleep 120"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + START_TIMEOUT
    while not cmdline.read_bytes().startswith(b"gemini-lock-holder\0"):  # bash has exec'd
        assert time.monotonic() < deadline, "the stand-in Gemini process did not start"
        time.sleep(0.01)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=START_TIMEOUT)


def test_gemini_home_is_gemini_cli_home_else_home() -> None:
    assert gemini_home({"HOME": "/h", "GEMINI_CLI_HOME": "/g"}) == "/g"
    assert gemini_home({"HOME": "/h", "GEMINI_CLI_HOME": ""}) == "/h"
    assert gemini_home({}) is None


def test_a_lock_no_gemini_process_can_hold_is_removed(home: Path) -> None:
    assert clear_orphaned_lock(str(home))
    assert not (home / REGISTRY_LOCK).exists()


def test_a_lock_is_kept_while_a_gemini_process_of_that_home_runs(home: Path) -> None:
    with running_gemini(home):
        assert not clear_orphaned_lock(str(home))
        assert (home / REGISTRY_LOCK).is_dir()
    # the process is gone (killed and reaped): now nothing can hold the lock
    assert clear_orphaned_lock(str(home))


def test_a_gemini_process_of_another_home_does_not_keep_the_lock(
    home: Path, tmp_path: Path
) -> None:
    with running_gemini(tmp_path / "elsewhere"):
        assert clear_orphaned_lock(str(home))


def test_the_shell_tool_gemini_left_running_does_not_keep_the_lock(home: Path) -> None:
    # Gemini's shell tool outlives a killed Gemini; its script names a gemini-shell temp file.
    script = "sleep 120; : /tmp/gemini-shell-x/bgpids.tmp"
    tool = subprocess.Popen(["bash", "-c", script], env={"HOME": str(home), "PATH": "/usr/bin"})
    try:
        assert clear_orphaned_lock(str(home))
    finally:
        tool.kill()
        tool.wait(timeout=START_TIMEOUT)


def test_no_lock_and_a_directory_that_is_not_a_lock_are_left_alone(tmp_path: Path) -> None:
    assert not clear_orphaned_lock(str(tmp_path))
    lock = tmp_path / REGISTRY_LOCK
    lock.mkdir(parents=True)
    (lock / "something").write_text("not proper-lockfile's")
    assert not clear_orphaned_lock(str(tmp_path))
    assert (lock / "something").exists()


def test_an_acp_session_of_gemini_clears_the_orphaned_lock_too(home: Path) -> None:
    def spec(*command: str) -> SessionSpec:
        return SessionSpec(session_id="s-1", cwd=home, command=command, env={"HOME": str(home)})

    assert AcpBackend().argv(spec("other-agent", "--acp"), None, None) == ["other-agent", "--acp"]
    assert (home / REGISTRY_LOCK).is_dir()  # not Gemini: its lock is not ours to touch
    assert AcpBackend().argv(spec("/usr/bin/gemini", "--acp"), None, None)[0] == "/usr/bin/gemini"
    assert not (home / REGISTRY_LOCK).exists()
