"""AsyncClient against a fake daemon that answers garbage: the caller gets a named error,
its own task group is left alone, and the client keeps working."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import zmq
import zmq.asyncio
from anyio.abc import TaskStatus

from agentplex import protocol as p
from agentplex.client.async_client import AsyncClient
from agentplex.protocol.errors import BadReply, RequestTimeout
from agentplex.protocol.paths import RuntimePaths

Answer = Callable[[int], list[bytes]]
"""What the fake daemon sends back for a request id: any number of raw frames."""


def good_pong(request_id: int) -> list[bytes]:
    info = p.DaemonInfo(
        pid=os.getpid(),
        version="fake",
        protocol=p.PROTOCOL_VERSION,
        runtime_dir="/fake",
        state_dir="/fake",
        started_at=0.0,
        sessions=0,
    )
    return [p.encode(p.Pong(id=request_id, daemon=info))]


def wrong_shape(request_id: int) -> list[bytes]:
    """Unreadable noise first (dropped), then a reply with the right id but no ``daemon``."""
    return [b"not json", json.dumps({"id": request_id, "type": "pong"}).encode()]


def only_noise(request_id: int) -> list[bytes]:
    return [b"not json", b'{"type": "pong", "id": "not-an-int"}']


async def fake_daemon(
    paths: RuntimePaths,
    answers: list[Answer],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A ROUTER on the runtime dir's control socket answering each request in turn."""
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(paths.control_endpoint)
    task_status.started()
    try:
        for answer in answers:
            identity, frame = await router.recv_multipart()
            request = p.request_decoder.decode(frame)
            assert request.id is not None
            for reply in answer(request.id):
                await router.send_multipart([identity, reply])
        await anyio.sleep_forever()
    finally:
        router.close()
        ctx.term()


def runtime_dir(tmp_path: Path) -> RuntimePaths:
    """A runtime dir the client accepts: its lock file is held, as a daemon holds it (the
    descriptor stays open until this process ends)."""
    paths = RuntimePaths(tmp_path / "run")
    paths.runtime_dir.mkdir(mode=0o700)
    paths.lock.write_text(f"{os.getpid()}\n")
    fcntl.flock(os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC), fcntl.LOCK_EX)
    return paths


async def _with_fake(
    paths: RuntimePaths, answers: list[Answer], body: Callable[..., object]
) -> None:
    async with anyio.create_task_group() as daemon_tg:
        await daemon_tg.start(fake_daemon, paths, answers)
        with anyio.fail_after(10):
            async with AsyncClient(paths.runtime_dir, timeout=5) as client:
                await body(client)  # type: ignore[misc]
        daemon_tg.cancel_scope.cancel()


def test_a_reply_of_the_wrong_shape_raises_bad_reply_and_spares_the_callers_tasks(
    short_tmp: Path,
) -> None:
    paths = runtime_dir(short_tmp)
    sibling_done = anyio.Event()

    async def sibling() -> None:
        for _ in range(20):  # keeps running while the bad reply arrives
            await anyio.sleep(0.01)
        sibling_done.set()

    async def body(client: AsyncClient) -> None:
        async with anyio.create_task_group() as user_tg:
            user_tg.start_soon(sibling)
            with pytest.raises(BadReply) as caught:
                await client.ping()
            assert caught.value.exit_code == 76
            assert (await client.ping()).version == "fake"  # the same client goes on
            await sibling_done.wait()
        assert not user_tg.cancel_scope.cancel_called

    anyio.run(_with_fake, paths, [wrong_shape, good_pong], body)
    assert sibling_done.is_set()


def test_a_reply_without_a_readable_id_is_dropped_and_the_client_keeps_receiving(
    short_tmp: Path,
) -> None:
    paths = runtime_dir(short_tmp)

    async def body(client: AsyncClient) -> None:
        with pytest.raises(RequestTimeout):  # nobody can be told: that request times out
            await client.ping(timeout=0.5)
        assert (await client.ping()).version == "fake"

    anyio.run(_with_fake, paths, [only_noise, good_pong], body)


def silence(request_id: int) -> list[bytes]:
    return []


def test_a_request_that_times_out_names_its_wire_type_and_what_to_do(short_tmp: Path) -> None:
    paths = runtime_dir(short_tmp)

    async def body(client: AsyncClient) -> None:
        with pytest.raises(RequestTimeout) as caught:
            await client.list(timeout=0.5)
        # "list", as the README's wire table names it, not the class ListSessions
        assert "did not answer a 'list' request within 0.5 s" in caught.value.message
        assert "timeout" in caught.value.message.split("s:", 1)[1]  # says what to try

    anyio.run(_with_fake, paths, [silence], body)
