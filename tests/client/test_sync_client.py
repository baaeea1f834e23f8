"""The blocking Client: a forgotten one does not keep a process alive, and it shows the
same signatures, docs and errors as AsyncClient."""

from __future__ import annotations

import gc
import inspect
import subprocess
import sys
import threading
import time

import pytest
from support import DaemonProcess

import agentplex.client
from agentplex.client import AsyncClient, Client
from agentplex.protocol import errors as e

EXIT_DEADLINE = 2.0
START_WAIT = 30.0


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "agentplex-client"]


def test_a_script_that_never_closes_its_client_exits_within_2_s(daemon: DaemonProcess) -> None:
    script = "from agentplex.client import Client; c = Client(); print(len(c.list().sessions))"
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", script], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "0\n"  # the script's last line has run
        printed = time.monotonic()
        try:
            code = process.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the script still runs {EXIT_DEADLINE} s after its last line")
        assert time.monotonic() - printed <= EXIT_DEADLINE
        assert code == 0
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_a_client_that_is_garbage_collected_ends_its_thread(daemon: DaemonProcess) -> None:
    before = len(client_threads())
    client = daemon.client()
    assert client.list().sessions == []
    assert len(client_threads()) == before + 1
    del client
    gc.collect()
    deadline = time.monotonic() + EXIT_DEADLINE
    while len(client_threads()) > before:
        assert time.monotonic() < deadline, "the collected client's thread still runs"
        time.sleep(0.02)


def test_a_closed_client_says_so(daemon: DaemonProcess) -> None:
    client = daemon.client()
    client.close()
    client.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.list()


@pytest.mark.parametrize("name", ["start", "send", "terminate", "list", "replay", "permit"])
def test_client_methods_show_the_async_signature_and_docs(name: str) -> None:
    blocking, awaitable = getattr(Client, name), getattr(AsyncClient, name)
    assert inspect.signature(blocking) == inspect.signature(awaitable)
    assert blocking.__doc__ == awaitable.__doc__
    assert blocking.__name__ == name
    assert "timeout" in inspect.signature(blocking).parameters


def test_every_named_error_is_importable_from_the_client_package() -> None:
    for cls in e.ERRORS_BY_CODE.values():
        assert getattr(agentplex.client, cls.__name__) is cls
    from agentplex.client import UnknownSession  # the issue's own example

    assert UnknownSession is e.UnknownSession
