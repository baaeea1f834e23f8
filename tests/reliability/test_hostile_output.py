"""Agents that misbehave on their pipes never break the daemon or lose a byte."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import psutil
import pytest
from support import DaemonProcess, descendants_with_marker, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.transcripts import read_chunks
from agentplex.protocol import errors as e

BINARY = b"\xff\xfe caf\xc3\xa9 \x00\x01\x80 end"


def _wait_ended(events: object, session_id: str, timeout: float = 60) -> p.SessionTerminated:
    event = next_event(
        events,  # type: ignore[arg-type]
        lambda ev: isinstance(ev, p.SessionTerminated) and ev.session.id == session_id,
        timeout=timeout,
    )
    assert isinstance(event, p.SessionTerminated)
    return event


def test_invalid_utf8_is_kept_byte_exact_and_shown_with_replacement_characters(
    client: Client,
) -> None:
    program = f"import sys\nsys.stdout.buffer.write({BINARY!r} + b'\\n')"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", program])
        chunk = next_event(events, is_chunk(info.id))
    assert isinstance(chunk, p.Chunk)
    assert chunk.kind is p.ChunkKind.RAW
    assert "\ufffd" in chunk.text and "café" in chunk.text
    assert chunk.b64 is not None and base64.b64decode(chunk.b64) == BINARY
    logged = next(read_chunks(info.transcript))
    assert logged.b64 == chunk.b64


def test_a_50_mb_line_without_newline_is_cut_into_bounded_chunks(
    daemon: DaemonProcess, client: Client
) -> None:
    size = 50 * 2**20
    program = f"import sys\nsys.stdout.write('x' * {size})\nsys.stdout.flush()"
    daemon_rss_before = psutil.Process(daemon.process.pid).memory_info().rss
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", program])
        _wait_ended(events, info.id)
    chunks = list(client.follow(info.id))
    assert sum(len(c.text) for c in chunks) == size
    assert all(len(c.text) <= 2**20 for c in chunks)
    assert all(c.partial for c in chunks)
    growth = psutil.Process(daemon.process.pid).memory_info().rss - daemon_rss_before
    assert growth < 64 * 2**20, f"daemon grew by {growth / 2**20:.0f} MiB"


def test_an_agent_that_closes_stdout_but_keeps_running_stays_a_live_session(
    client: Client,
) -> None:
    program = "import os, time\nprint('bye', flush=True)\nos.close(1)\ntime.sleep(300)"
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", program])
        next_event(events, is_chunk(info.id, text="bye"))
    assert client.inspect(info.id).status is p.SessionStatus.RUNNING
    reply = client.terminate(info.id, grace=1)
    assert reply.session.status is p.SessionStatus.TERMINATED
    assert descendants_with_marker(info.id) == []


def test_an_agent_that_exits_before_reading_its_stdin_ends_cleanly(client: Client) -> None:
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", "a prompt nobody reads", argv=["true"])
        ended = _wait_ended(events, info.id)
    assert ended.session.status is p.SessionStatus.EXITED
    with pytest.raises(e.SessionEnded):
        client.send("anyone there?", info.id)
    assert client.ping().pid > 0


def test_a_full_disk_stops_that_session_only_and_the_daemon_goes_on(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, wrapper=["prlimit", f"--fsize={4 * 2**20}"])
    flood = "import sys\nfor i in range(10**6):\n    print('y' * 100)\n"
    try:
        with daemon.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
            quiet = client.start("exec", argv=["cat"], tag="quiet")
            noisy = client.start("exec", argv=[sys.executable, "-c", flood], tag="noisy")
            ended = _wait_ended(events, noisy.id)
            assert "cannot write" in ended.reason and "too large" in ended.reason.lower()
            assert ended.session.status is p.SessionStatus.TERMINATED
            with client.subscribe(p.chunk_topic(quiet.id)) as chunks:
                client.send("still here", quiet.id)
                next_event(chunks, is_chunk(quiet.id, text="still here"))
            assert descendants_with_marker(noisy.id) == []
    finally:
        assert daemon.stop() == 0
