"""Shared fixtures: a real daemon in its own process, with isolated dirs, per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, start_daemon

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
