"""Every kind of bad input gets its own error code, and the daemon keeps serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
import zmq
from support import DaemonProcess, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client
from agentplex.protocol import errors as e

CAT = ["cat"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"backend": "nope"}, e.UnknownBackend),
        ({"backend": "demo", "prompt": ""}, e.EmptyPrompt),
        ({"backend": "demo", "prompt": "   "}, e.EmptyPrompt),
        ({"backend": "demo"}, e.EmptyPrompt),
        ({"backend": "exec", "argv": CAT, "prompt": ""}, e.EmptyPrompt),
        ({"backend": "exec"}, e.InvalidArgument),
        ({"backend": "exec", "argv": CAT, "tag": "../etc"}, e.InvalidName),
        ({"backend": "exec", "argv": CAT, "tag": "a/b"}, e.InvalidName),
        ({"backend": "exec", "argv": CAT, "tag": "x" * 129}, e.InvalidName),
        ({"backend": "exec", "argv": CAT, "tag": "bell\x07"}, e.InvalidName),
        ({"backend": "exec", "argv": CAT, "persona": ".."}, e.InvalidName),
        ({"backend": "exec", "argv": CAT, "cwd": "/does/not/exist"}, e.BadCwd),
        ({"backend": "exec", "argv": CAT, "cwd": "relative/dir"}, e.BadCwd),
        ({"backend": "exec", "argv": CAT, "env": {"A=B": "x"}}, e.InvalidArgument),
        ({"backend": "exec", "argv": ["/no/such/program"]}, e.SpawnFailed),
        ({"backend": "exec", "argv": ["echo", "a\x00b"]}, e.SpawnFailed),
        ({"backend": "demo", "prompt": "nul\x00byte"}, e.InvalidArgument),
    ],
)
def test_a_bad_start_is_refused_with_its_error_and_the_daemon_goes_on(
    client: Client, kwargs: dict[str, object], error: type[e.AgentplexError]
) -> None:
    with pytest.raises(error) as raised:
        client.start(**kwargs)  # type: ignore[arg-type]
    assert raised.value.message
    assert client.ping().pid > 0


def test_unknown_and_ambiguous_session_ids_are_told_apart(client: Client) -> None:
    with pytest.raises(e.UnknownSession):
        client.send("hi", "ffffffff-no-such-session")
    ids: list[str] = []
    while not _two_share_a_first_character(ids):
        ids.append(client.start("exec", argv=CAT).id)
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    with pytest.raises(e.AmbiguousSession):
        client.send("hi", shared)
    assert client.inspect(ids[-1][:8]).id == ids[-1]


def _two_share_a_first_character(ids: list[str]) -> bool:
    return len({i[0] for i in ids}) < len(ids)


def test_sending_to_a_terminated_session_or_an_empty_message_is_refused(client: Client) -> None:
    info = client.start("exec", argv=CAT)
    with pytest.raises(e.EmptyPrompt):
        client.send("", info.id)
    client.terminate(info.id)
    with pytest.raises(e.SessionEnded):
        client.send("hello", info.id)
    with pytest.raises(e.UnknownSession):
        client.switch("no-such-session")


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"not json"], "bad_request"),
        ([b"[1, 2, 3]"], "bad_request"),
        ([json.dumps({"type": "start", "id": 3, "backend": 7}).encode()], "bad_request"),
        ([json.dumps({"type": "explode", "id": 5}).encode()], "unknown_type"),
        ([json.dumps({"type": "list", "id": 6, "v": 99}).encode()], "unsupported_version"),
        ([json.dumps({"type": "list", "id": 7, "v": "one"}).encode()], "unsupported_version"),
        ([b"{}", b"{}"], "bad_request"),
        ([b" " * (p.MAX_FRAME_BYTES + 1)], "frame_too_large"),
        ([b"\xff\xfe\x00garbage"], "bad_request"),
    ],
)
def test_malformed_wire_messages_get_an_error_reply_with_a_code(
    daemon: DaemonProcess, client: Client, frames: list[bytes], code: str
) -> None:
    reply = _raw_request(daemon.runtime_dir, frames)
    assert isinstance(reply, p.Error)
    assert reply.code == code
    assert reply.message
    if code in ("unknown_type", "unsupported_version"):
        assert reply.id == json.loads(frames[0])["id"]
    assert client.list().sessions == []


def _raw_request(runtime_dir: Path, frames: list[bytes]) -> p.Reply:
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 10_000)
        sock.connect(f"ipc://{runtime_dir}/control.sock")
        sock.send_multipart(frames)
        reply = p.reply_decoder.decode(sock.recv())
        sock.close()
        return reply
    finally:
        ctx.term()


STUBBORN = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_a_slow_terminate_does_not_hold_up_other_requests(daemon: DaemonProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(daemon.runtime_dir) as client:
            async with client.subscribe(p.CHUNK_TOPIC) as events:
                info = await client.start("exec", argv=[sys.executable, "-c", STUBBORN])
                with anyio.fail_after(20):
                    async for event in events:
                        if isinstance(event, p.Chunk) and event.text == "ready":
                            break
            terminated = anyio.Event()

            async def terminate() -> None:
                await client.terminate(info.id, grace=3)
                terminated.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(terminate)
                listing = await client.list()
                assert not terminated.is_set()
                assert listing.sessions[0].id == info.id
            assert terminated.is_set()

    anyio.run(scenario)


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("no-such-program-anywhere", "No such file or directory"),
        ("./missing.sh", "No such file or directory"),
        ("./not-executable.sh", "Permission denied"),
        ("./a-directory", "Permission denied"),
    ],
)
def test_a_program_that_cannot_run_fails_the_start_with_the_exec_error(
    client: Client, tmp_path: Path, program: str, reason: str
) -> None:
    (tmp_path / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(e.SpawnFailed) as raised:
        client.start("exec", argv=[program], cwd=str(tmp_path))
    assert raised.value.message == f"cannot start {program!r}: {reason}"


def test_a_relative_program_runs_from_the_session_cwd(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(pwd)\n")
    script.chmod(0o755)
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=["./hello.sh"], cwd=str(tmp_path))
        chunk = next_event(events, is_chunk(info.id, text="hello from"))
    assert chunk.text.strip() == f"hello from {tmp_path}"  # type: ignore[union-attr]
