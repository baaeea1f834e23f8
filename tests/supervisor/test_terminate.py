"""Terminating a session ends its whole tree, even processes that left its group.

Every test runs under both ways of tracking processes (``cgroup`` where the daemon may
manage one, and ``tree``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from support import DaemonProcess, descendants_with_marker, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client
from agentplex.client.transcripts import read_records
from agentplex.supervisor.cgroups import CgroupTree


@pytest.fixture(params=["cgroup", "tree"])
def daemon(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[DaemonProcess]:
    """A daemon tracking processes the given way (overrides conftest's)."""
    if request.param == "cgroup" and CgroupTree.detect() is None:
        pytest.skip("no cgroup v2 hierarchy this daemon may manage")
    d = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_PROCESS_TRACKING": request.param})
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log_lines[-5:]

ESCAPING_GRANDCHILD = """
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    middle = os.getpid()
    if os.fork() > 0:
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while os.getppid() == middle:  # report only once re-parented to a subreaper
        time.sleep(0.01)
    print(f"grandchild {os.getpid()}", flush=True)
    while True:
        time.sleep(1)
print(f"leader {os.getpid()}", flush=True)
sys.stdin.read()
"""


def test_terminate_kills_a_setsid_double_forked_grandchild_that_ignores_sigterm(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", ESCAPING_GRANDCHILD])
        ready = next_event(events, is_chunk(info.id, text="grandchild"))
    grandchild = int(ready.text.split()[1])  # type: ignore[union-attr]
    assert info.pid is not None
    # Re-parented to a subreaper: the leader in ``tree`` mode, else the daemon.
    assert psutil.Process(grandchild).ppid() in (daemon.process.pid, info.pid)

    reply = client.terminate(info.id, grace=0.5)

    assert reply.escalated
    assert reply.session.status is p.SessionStatus.TERMINATED
    assert not psutil.pid_exists(grandchild)
    assert descendants_with_marker(info.id) == []
    zombies = [
        c
        for c in psutil.Process(daemon.process.pid).children(recursive=True)
        if c.status() == psutil.STATUS_ZOMBIE
    ]
    assert zombies == []
    records = list(read_records(info.transcript))
    assert isinstance(records[-1], p.Footer)
    assert records[-1].status is p.SessionStatus.TERMINATED


def test_terminate_of_a_polite_session_needs_no_sigkill(
    daemon: DaemonProcess, client: Client
) -> None:
    info = client.start("exec", argv=["sleep", "300"])
    reply = client.terminate(info.id, grace=5)
    assert not reply.escalated
    assert reply.session.exit_code is None
    assert descendants_with_marker(info.id) == []


def test_terminate_twice_returns_the_ended_session(daemon: DaemonProcess, client: Client) -> None:
    info = client.start("exec", argv=["sleep", "300"])
    client.terminate(info.id)
    again = client.terminate(info.id)
    assert again.session.status is p.SessionStatus.TERMINATED


def test_a_turn_ends_the_processes_its_agent_left_running(client: Client) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("demo", "BACKGROUND please")
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        next_event(
            events,
            lambda e: (
                isinstance(e, p.StatusChanged)
                and e.session_id == info.id
                and e.status is p.SessionStatus.IDLE
            ),
        )
    left = int(result.text.split("background=")[1].split()[0])  # type: ignore[union-attr]
    assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE
    assert descendants_with_marker(info.id) == []


def test_sessions_terminated_together_each_lose_their_escaped_grandchildren(
    daemon: DaemonProcess, client: Client
) -> None:
    """Concurrent terminates share /proc scans; each must still find its own strays."""
    grandchildren: dict[str, int] = {}

    def escaped(event: p.Event) -> bool:
        if isinstance(event, p.Chunk) and event.text.startswith("grandchild"):
            grandchildren[event.session_id] = int(event.text.split()[1])
        return len(grandchildren) == 4

    with client.subscribe(p.CHUNK_TOPIC) as events:
        infos = [
            client.start("exec", argv=[sys.executable, "-c", ESCAPING_GRANDCHILD]) for _ in range(4)
        ]
        next_event(events, escaped)

    async def terminate_all() -> list[p.Terminated]:
        replies: list[p.Terminated] = []
        async with AsyncClient(daemon.runtime_dir) as async_client:

            async def terminate(session_id: str) -> None:
                replies.append(await async_client.terminate(session_id, grace=0.5))

            async with anyio.create_task_group() as tg:
                for info in infos:
                    tg.start_soon(terminate, info.id)
        return replies

    replies = anyio.run(terminate_all)

    assert all(reply.escalated for reply in replies) and len(replies) == 4
    for info in infos:
        assert not psutil.pid_exists(grandchildren[info.id])
        assert descendants_with_marker(info.id) == []
