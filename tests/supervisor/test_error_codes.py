"""Small faults get their own error code, never ``internal``, and nothing reaches an agent
without being logged (issue 11, item 12)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.transcripts import read_records
from agentplex.protocol import errors as e

RACES = 8


def _exchange(runtime_dir: Path, frames: list[bytes], timeout_ms: int = 30_000) -> list[bytes]:
    """Send ``frames`` back to back on one DEALER (one request each); the raw replies."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        sock.connect(f"ipc://{runtime_dir}/control.sock")
        for frame in frames:
            sock.send(frame)
        replies = [sock.recv() for _ in frames]
        sock.close()
        return replies
    finally:
        ctx.term()


def _by_id(raw_replies: list[bytes]) -> dict[int, p.Reply]:
    replies = [p.reply_decoder.decode(raw) for raw in raw_replies]
    return {reply.id: reply for reply in replies}


def _messages_in(transcript: str) -> list[tuple[int, str]]:
    return [(r.turn, r.text) for r in read_records(transcript) if isinstance(r, p.MessageIn)]


ECHO = "import sys\nfor line in sys.stdin:\n    print('got', line, end='', flush=True)\n"


@pytest.mark.parametrize(
    ("backend", "argv"), [("demo", []), ("exec", [sys.executable, "-c", ECHO])]
)
def test_a_send_racing_its_start_follows_the_prompt(
    daemon: DaemonProcess, client: Client, backend: str, argv: list[str]
) -> None:
    for round_ in range(RACES):
        start = p.Start(id=1, backend=backend, prompt=f"prompt {round_}", argv=argv)
        send = p.Send(id=2, message=f"racing {round_}")  # to the active session: the new one
        with client.subscribe(p.CHUNK_TOPIC) as chunks:
            replies = _by_id(_exchange(daemon.runtime_dir, [p.encode(start), p.encode(send)]))
            started, sent = replies[1], replies[2]
            assert isinstance(started, p.Started), started
            assert isinstance(sent, p.Sent), sent  # was: internal "run() must be started first"
            info = started.session
            if backend == "demo":
                next_event(chunks, is_chunk(info.id, p.ChunkKind.RESULT, "prompt"), timeout=60)
                next_event(chunks, is_chunk(info.id, p.ChunkKind.RESULT, "racing"), timeout=60)
            else:
                next_event(chunks, is_chunk(info.id, text=f"got prompt {round_}"), timeout=60)
                next_event(chunks, is_chunk(info.id, text=f"got racing {round_}"), timeout=60)
        assert _messages_in(info.transcript) == [(1, f"prompt {round_}"), (2, f"racing {round_}")]
        client.terminate(info.id)


CLOSES_STDIN = "import os, time\nos.close(0)\nprint('stdin closed', flush=True)\ntime.sleep(600)\n"


def test_a_send_to_an_agent_that_closed_its_stdin_is_refused_as_agent_not_reading(
    client: Client,
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as chunks:
        info = client.start("exec", argv=[sys.executable, "-c", CLOSES_STDIN])
        next_event(chunks, is_chunk(info.id, text="stdin closed"))
    refused = None
    for attempt in range(50):  # the first writes find the pipe broken; a later send is told
        try:
            client.send(f"message {attempt}", info.id)
        except e.AgentNotReading as exc:  # was: internal BrokenResourceError
            refused = exc
            break
    assert refused is not None
    assert "closed its stdin" in refused.message
    after = client.inspect(info.id)
    assert after.status is p.SessionStatus.RUNNING
    logged = [text for _, text in _messages_in(after.transcript)]
    assert f"message {attempt}" not in logged  # what is refused is not logged as a turn
    assert len(logged) == attempt == after.turns
    client.terminate(info.id)


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type": "ping", "id": 4, "extra": ' + NESTED + b"}",
        b'{"type": "ping", "id": ' + NESTED + b"}",
        b'{"type": "start", "id": 4, "backend": "exec", "env": ' + NESTED + b"}",
        NESTED,
    ],
)
def test_deeply_nested_json_is_a_bad_request(
    daemon: DaemonProcess, client: Client, frame: bytes
) -> None:
    (raw,) = _exchange(daemon.runtime_dir, [frame])
    reply = p.reply_decoder.decode(raw)
    assert isinstance(reply, p.Error)
    assert reply.code == "bad_request", reply  # was: internal RecursionError
    assert client.ping().pid > 0


@pytest.mark.parametrize("tag", ["é" * 128, "🦀" * 64, "x" * 40 + "é" * 85])
def test_a_tag_too_long_for_a_directory_name_is_an_invalid_name(client: Client, tag: str) -> None:
    assert len(tag.encode()) > 200
    with pytest.raises(e.InvalidName) as refused:  # was: internal ENAMETOOLONG
        client.start("exec", argv=["cat"], tag=tag)
    assert "bytes" in refused.value.message
    assert client.list().sessions == []


def test_a_tag_of_up_to_200_bytes_is_a_directory(client: Client) -> None:
    tag = "é" * 100
    info = client.start("exec", argv=["cat"], tag=tag)
    assert Path(info.transcript).parent.name == tag
    client.terminate(info.id)


def test_a_tag_directory_that_cannot_be_written_is_transcript_failed(
    daemon: DaemonProcess, client: Client
) -> None:
    sessions = daemon.state_dir / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    (sessions / "blocked").write_text("a file where the tag's directory should be\n")
    with pytest.raises(e.TranscriptFailed) as refused:  # was: internal FileExistsError
        client.start("exec", argv=["cat"], tag="blocked")
    assert "blocked" in refused.value.message
    assert client.list().sessions == []
    assert client.start("exec", argv=["cat"], tag="fine").status is not p.SessionStatus.FAILED


@pytest.mark.parametrize("request_id", [0, 7])
def test_a_reply_always_carries_the_request_id(daemon: DaemonProcess, request_id: int) -> None:
    ping = json.dumps({"type": "ping", "id": request_id, "v": 1}).encode()
    unknown = json.dumps({"type": "explode", "id": request_id}).encode()
    for raw in _exchange(daemon.runtime_dir, [ping, unknown]):
        assert json.loads(raw)["id"] == request_id  # was: no "id" at all for id 0


COUNTS_MESSAGES = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    with open('received.txt', 'a') as f:\n"
    "        f.write(f'{len(line)}\\n')\n"
    "    print('received', len(line), flush=True)\n"
)
FSIZE = 1 << 20
"""The daemon's largest file (prlimit --fsize): a transcript past it cannot grow (EFBIG)."""


def test_a_message_that_cannot_be_logged_is_refused_and_never_reaches_the_agent(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, "--grace", "2", wrapper=["prlimit", f"--fsize={FSIZE}"])
    work = short_tmp / "work"
    work.mkdir()
    message = "m" * (FSIZE * 6 // 10)  # one fits in the transcript, two do not
    try:
        with daemon.client(timeout=30) as client, client.subscribe(p.CHUNK_TOPIC) as chunks:
            argv = [sys.executable, "-c", COUNTS_MESSAGES]
            info = client.start("exec", argv=argv, cwd=str(work))
            client.send(message, info.id)
            next_event(chunks, is_chunk(info.id, text="received"), timeout=60)
            with pytest.raises(e.TranscriptFailed):  # was: sent, and given to the agent
                client.send(message, info.id)
            with client.subscribe(p.SESSION_TOPIC) as events:  # it is stopped: wait for that
                if not client.inspect(info.id).status.ended:
                    next_event(events, _terminated(info.id), timeout=60)
        lengths = (work / "received.txt").read_text().split()
        assert lengths == [str(len(message) + 1)]  # the second never reached the agent
    finally:
        assert daemon.stop() == 0, daemon.log_lines[-5:]


def _terminated(session_id: str) -> Callable[[p.Event], bool]:
    def match(event: p.Event) -> bool:
        return isinstance(event, p.SessionTerminated) and event.session.id == session_id

    return match
