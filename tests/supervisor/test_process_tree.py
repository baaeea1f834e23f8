"""A session owns every process descended from it: none escapes its end, the daemon's end,
a terminate racing its start, or a terminate that failed halfway.

Tests that depend on how processes are tracked run under both ``process_tracking`` modes:
``cgroup`` (a cgroup v2 per session; skipped where the daemon may not manage one) and
``tree`` (the process tree, with each leader a child subreaper).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from support import DaemonProcess, descendants_with_marker, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient, Client
from agentplex.client.transcripts import read_records
from agentplex.protocol.errors import AgentplexError
from agentplex.supervisor.cgroups import CgroupTree

CGROUP_USABLE = CgroupTree.detect() is not None


def alive(pids: set[int]) -> set[int]:
    """The pids in ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            continue
    return running


def wait_until(condition: object, timeout: float, what: str) -> None:
    """Wait for ``condition()`` to hold, failing the test after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pids_in(path: Path) -> set[int]:
    """The pids the test's agents wrote to ``path``, one per line."""
    if not path.exists():
        return set()
    return {int(line) for line in path.read_text().split() if line.strip()}


@pytest.fixture(params=["cgroup", "tree"])
def tracked_daemon(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[DaemonProcess]:
    """A daemon tracking processes the given way."""
    if request.param == "cgroup" and not CGROUP_USABLE:
        pytest.skip("no cgroup v2 hierarchy this daemon may manage")
    env = {"AGENTPLEX_PROCESS_TRACKING": request.param}
    d = start_daemon(short_tmp, "--grace", "1", env=env)
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log_lines[-5:]


# ---------------------------------------------------------------- a terminate racing a start


async def start_and_terminate_at_once(daemon: DaemonProcess, rounds: int) -> int:
    """Pipeline ``start`` and a terminate of the active session, ``rounds`` times over two
    clients; returns how many terminates replied ``terminated``."""
    terminated = 0
    async with (
        AsyncClient(daemon.runtime_dir, timeout=60) as starter,
        AsyncClient(daemon.runtime_dir, timeout=60) as stopper,
    ):

        async def start() -> None:
            await starter.start("exec", argv=["sleep", "300"], tag="race")

        async def terminate() -> None:
            nonlocal terminated
            try:
                await stopper.terminate(None, grace=1)
                terminated += 1
            except AgentplexError:
                pass  # no active session yet: the terminate came first

        for _ in range(rounds):
            async with anyio.create_task_group() as tg:
                tg.start_soon(start)
                tg.start_soon(terminate)
    return terminated


def test_a_terminate_racing_a_start_leaves_no_agent_running(
    tracked_daemon: DaemonProcess,
) -> None:
    terminated = anyio.run(start_and_terminate_at_once, tracked_daemon, 40)
    assert terminated > 0
    with tracked_daemon.client(timeout=60) as client:
        sessions = client.list().sessions
        for info in sessions:
            if info.status.ended:
                assert descendants_with_marker(info.id) == [], f"{info.id} left its agent"
                records = list(read_records(info.transcript))
                spawned = sum(isinstance(r, p.ProcessSpawned) for r in records)
                exited = sum(isinstance(r, p.ProcessExit) for r in records)
                assert spawned == exited, f"{info.id}: a process spawned but never exited"
            else:
                client.terminate(info.id, grace=1)
    for info in sessions:
        assert descendants_with_marker(info.id) == []


# ---------------------------------------------------------------- a terminate that fails midway

MANY_STRAYS = 400
STRAYS = f"""
for i in $(seq {MANY_STRAYS}); do setsid sh -c 'trap "" TERM; exec sleep 300' & done
echo ready
exec sleep 300
"""


def test_a_terminate_that_runs_out_of_descriptors_still_finishes(short_tmp: Path) -> None:
    """More strays than the daemon has descriptors for pidfds: terminate still ends them all,
    replies, and a second terminate answers at once (it used to hang for ever)."""
    env = {"AGENTPLEX_MAX_PROCESSES": "0"}
    daemon = start_daemon(
        short_tmp, "--grace", "1", env=env, wrapper=["prlimit", "--nofile=256:256", "--"]
    )
    try:
        with daemon.client(timeout=90) as client:
            info = client.start("exec", argv=["sh", "-c", STRAYS])
            wait_until(
                lambda: len(descendants_with_marker(info.id)) > MANY_STRAYS,
                120,
                "every stray to start",
            )
            strays = {proc.pid for proc in descendants_with_marker(info.id)}
            replies = []
            for _attempt in range(2):  # a retry must be able to finish what a failure left
                try:
                    replies.append(client.terminate(info.id, grace=0.5, timeout=90))
                except AgentplexError as exc:
                    assert exc.code != "timeout", "a terminate never replied"
            assert replies and replies[-1].session.status is p.SessionStatus.TERMINATED
            wait_until(lambda: not alive(strays), 30, "every stray to be gone")
            assert client.inspect(info.id).status is p.SessionStatus.TERMINATED
    finally:
        assert daemon.stop(timeout=90) == 0


# ---------------------------------------------------------------- children of an ended agent

BACKGROUND = """
for i in $(seq {count}); do sleep 300 & echo $! >> {pids}; done
exit {code}
"""


@pytest.mark.parametrize("code", [0, 3])
def test_children_an_agent_left_behind_are_ended_with_it(
    tracked_daemon: DaemonProcess, short_tmp: Path, code: int
) -> None:
    pids_file = short_tmp / "pids"
    script = BACKGROUND.format(count=200, pids=pids_file, code=code)
    with tracked_daemon.client(timeout=60) as client:
        with client.subscribe(p.SESSION_TOPIC) as events:
            info = client.start("exec", argv=["sh", "-c", script])
            deadline = time.monotonic() + 60
            while not client.inspect(info.id).status.ended:
                assert time.monotonic() < deadline, "the session did not end"
                events.receive(1.0)
        ended = client.inspect(info.id)
    assert ended.status is (p.SessionStatus.EXITED if code == 0 else p.SessionStatus.FAILED)
    children = pids_in(pids_file)
    assert len(children) == 200
    wait_until(lambda: not alive(children), 30, "the agent's children to be ended")


ESCAPING = """
setsid env -i sh -c 'echo $$ >> {pids}; exec sleep 300' &
sh -c 'setsid sh -c "echo \\$\\$ >> {pids}; exec sleep 300" & exit 0' &
echo $$ >> {pids}
echo ready
exec sleep 300
"""


def test_terminate_ends_children_that_cleared_the_marker_and_left_the_session(
    tracked_daemon: DaemonProcess, short_tmp: Path
) -> None:
    pids_file = short_tmp / "pids"
    with tracked_daemon.client(timeout=60) as client:
        info = client.start("exec", argv=["sh", "-c", ESCAPING.format(pids=pids_file)])
        wait_until(lambda: len(pids_in(pids_file)) == 3, 30, "the escapers to start")
        escaped = pids_in(pids_file)
        assert alive(escaped) == escaped
        reply = client.terminate(info.id, grace=1)
    assert reply.session.status is p.SessionStatus.TERMINATED
    wait_until(lambda: not alive(escaped), 30, "the escaped children to be ended")


def test_kept_children_outlive_their_agent_until_the_daemon_stops(short_tmp: Path) -> None:
    pids_file = short_tmp / "pids"
    daemon = start_daemon(short_tmp, "--grace", "1")
    try:
        with daemon.client(timeout=60) as client:
            script = BACKGROUND.format(count=3, pids=pids_file, code=0)
            info = client.start("exec", argv=["sh", "-c", script], keep_children=True)
            assert info.keep_children
            deadline = time.monotonic() + 60
            while not client.inspect(info.id).status.ended:
                assert time.monotonic() < deadline, "the session did not end"
                time.sleep(0.05)
        kept = pids_in(pids_file)
        assert len(kept) == 3 and alive(kept) == kept
    finally:
        assert daemon.stop(timeout=60) == 0
    assert not alive(kept), "the daemon's shutdown left kept children running"


def test_a_graceful_shutdown_ends_what_ended_sessions_left(short_tmp: Path) -> None:
    """Children that outran every session's tracking still end with the daemon."""
    pids_file = short_tmp / "pids"
    daemon = start_daemon(short_tmp, "--grace", "1", env={"AGENTPLEX_PROCESS_TRACKING": "tree"})
    try:
        with daemon.client(timeout=60) as client:
            script = f"setsid env -i sh -c 'echo $$ >> {pids_file}; exec sleep 300' & exit 0"
            info = client.start("exec", argv=["sh", "-c", script], keep_children=True)
            wait_until(lambda: len(pids_in(pids_file)) == 1, 30, "the child to start")
            wait_until(lambda: client.inspect(info.id).status.ended, 30, "the session to end")
        child = pids_in(pids_file)
        assert alive(child) == child
        assert psutil.Process(next(iter(child))).ppid() == daemon.process.pid
    finally:
        assert daemon.stop(timeout=60) == 0
    assert not alive(child)


# ---------------------------------------------------------------- max_processes

FORK_AWAY = """
for i in $(seq 12); do sh -c 'setsid sleep 300 & exit 0'; done
echo ready
exec sleep 300
"""


def test_max_processes_counts_children_that_double_forked_away(
    short_tmp: Path,
) -> None:
    env = {"AGENTPLEX_MAX_PROCESSES": "8", "AGENTPLEX_LIMIT_INTERVAL": "0.2"}
    daemon = start_daemon(short_tmp, "--grace", "1", env=env)
    try:
        with daemon.client(timeout=60) as client:
            info = client.start("exec", argv=["sh", "-c", FORK_AWAY])
            wait_until(lambda: client.inspect(info.id).status.ended, 60, "the limit to act")
            ended = client.inspect(info.id)
        assert ended.status is p.SessionStatus.TERMINATED
        assert ended.ended_reason is not None and "max_processes" in ended.ended_reason
        assert descendants_with_marker(info.id) == []
    finally:
        assert daemon.stop(timeout=60) == 0


def test_keep_children_is_shown_in_ls(daemon: DaemonProcess, client: Client) -> None:
    info = client.start("exec", argv=["sleep", "300"], keep_children=True)
    listing = daemon.cli("ls", check=True).stdout
    line = next(line for line in listing.splitlines() if info.id[:8] in line)
    assert "keep" in line
    client.terminate(info.id, grace=1)


def test_the_cli_starts_a_session_that_keeps_its_children(daemon: DaemonProcess) -> None:
    started = daemon.cli("start", "--keep-children", "-b", "exec", "--", "sleep", "300", check=True)
    session_id = started.stdout.strip()
    with daemon.client() as client:
        assert client.inspect(session_id).keep_children
        client.terminate(session_id, grace=1)

