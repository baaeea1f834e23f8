"""Shared fixtures: a real daemon in its own process, with isolated dirs, per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, install_agent_clis, start_daemon

from agentplex.client import Client


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary dir with a short path (ipc:// socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="apx-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    """A running daemon; stopped after the test, which must leave it exiting cleanly."""
    d = start_daemon(short_tmp, "--grace", "2")
    try:
        yield d
    finally:
        code = d.stop()
        assert code == 0, f"daemon exited with {code}: {d.log_lines[-5:]}"


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture(scope="session")
def agent_clis() -> dict[str, Path]:
    """The real agent CLIs (claude, codex, gemini), installed from npm into the cache once."""
    return install_agent_clis()


@pytest.fixture
def backend_daemon(short_tmp: Path, agent_clis: dict[str, Path]) -> Iterator[DaemonProcess]:
    """A daemon whose claude/codex/gemini backends run the real CLIs from the cache."""
    env = {f"AGENTPLEX_{name.upper()}_CLI": str(path) for name, path in agent_clis.items()}
    d = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        yield d
    finally:
        code = d.stop()
        assert code == 0, f"daemon exited with {code}: {d.log_lines[-5:]}"
