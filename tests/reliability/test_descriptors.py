"""File descriptors: the daemon raises its limit, refuses starts before running out, never
aborts, footers every transcript on the way out, and leaks none (issue 11, item 1)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import time
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import psutil
import pytest
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient
from agentplex.client.transcripts import read_records
from agentplex.protocol.errors import AgentplexError

SLEEP = ["sleep", "600"]
MANY = 1000
LOW_LIMIT = 1024
CONCURRENT_STARTS = 64
START_TIMEOUT = 30.0
"""Generous for one start on a loaded machine; a daemon that aborted answers none."""

needs_prlimit = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")


def _nofile(soft: int, hard: int) -> list[str]:
    return ["prlimit", f"--nofile={soft}:{hard}", "--"]


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _start_many(daemon: DaemonProcess, count: int) -> tuple[list[p.SessionInfo], list[str]]:
    """Start ``count`` exec sessions at once; the sessions started and the error codes."""
    started: list[p.SessionInfo] = []
    refused: list[str] = []

    async def one(client: AsyncClient, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            try:
                started.append(await client.start("exec", argv=SLEEP, timeout=START_TIMEOUT))
            except AgentplexError as exc:
                refused.append(exc.code)

    async def starts(client: AsyncClient) -> None:
        limiter = anyio.CapacityLimiter(CONCURRENT_STARTS)
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one, client, limiter)

    async def main() -> None:
        async with AsyncClient(daemon.runtime_dir) as client, anyio.create_task_group() as tg:
            tg.start_soon(_cancel_if_the_daemon_dies, daemon, tg.cancel_scope)
            await starts(client)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert daemon.process.poll() is None, f"the daemon died: {daemon.log_lines[-3:]}"
    return started, refused


async def _cancel_if_the_daemon_dies(daemon: DaemonProcess, scope: anyio.CancelScope) -> None:
    """A daemon that aborted answers nothing: stop waiting for its replies at once."""
    pidfd = os.pidfd_open(daemon.process.pid)
    try:
        await anyio.wait_readable(pidfd)  # readable once the process has ended
    finally:
        os.close(pidfd)
    scope.cancel()


def _crash(daemon: DaemonProcess, sessions: list[p.SessionInfo]) -> None:
    """SIGKILL the daemon and wait until its agents (killed with it) are gone too: one still
    dying when the next daemon looks would be taken back as running."""
    pids = [s.pid for s in sessions if s.pid is not None]
    # An agent still in its setpriv wrapper has no death signal yet (the window DeathPact
    # documents): crash only once every one runs its own program, as a real crash would.
    deadline = time.monotonic() + 60
    while any(_in_wrapper(pid) for pid in pids):
        assert time.monotonic() < deadline, "the agents never left their wrapper"
        time.sleep(0.05)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(30)
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, "the agents outlived the daemon"
        time.sleep(0.05)


def _in_wrapper(pid: int) -> bool:
    try:
        return psutil.Process(pid).name() == "setpriv"
    except psutil.NoSuchProcess:
        return False


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != b"Z"


def _assert_new_clients_are_answered(daemon: DaemonProcess, clients: int) -> None:
    """``clients`` new connections at once, each answered (libzmq used to abort on accept)."""

    async def main() -> None:
        async with AsyncExitStack() as stack:
            opened = [
                await stack.enter_async_context(AsyncClient(daemon.runtime_dir, timeout=60))
                for _ in range(clients)
            ]
            for client in opened:  # all connected at once, then each asked
                assert (await client.ping()).pid == daemon.process.pid
            assert len((await opened[0].list()).sessions) >= 1

    anyio.run(main)
    assert daemon.process.poll() is None, daemon.log_lines[-5:]


def _last_record(path: str) -> p.Record:
    records = list(read_records(path))
    assert records, f"{path} is empty"
    return records[-1]


def _assert_footered(sessions: list[p.SessionInfo], status: p.SessionStatus) -> None:
    unfinished = []
    for info in sessions:
        last = _last_record(info.transcript)
        if not (isinstance(last, p.Footer) and last.status is status):
            unfinished.append((info.id, last))
    assert not unfinished, f"{len(unfinished)} transcripts not footered: {unfinished[:3]}"


def _statuses_after_restart(base: Path) -> dict[str, p.SessionStatus]:
    """The session table as a restarted daemon lists it."""
    daemon = start_daemon(base)
    try:
        with daemon.client(timeout=60) as client:
            return {s.id: s.status for s in client.list().sessions}
    finally:
        assert daemon.stop(timeout=60) == 0


@needs_prlimit
@pytest.mark.timeout(300)
def test_a_thousand_exec_sessions_run_under_a_soft_limit_of_1024(short_tmp: Path) -> None:
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192)
    if hard < 6 * MANY:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low for {MANY} sessions")
    daemon = start_daemon(short_tmp, "--grace", "2", wrapper=_nofile(LOW_LIMIT, hard))
    try:
        started, refused = _start_many(daemon, MANY)
        assert (len(started), refused) == (MANY, []), (len(started), set(refused))
        ready = next(line for line in daemon.log_lines if line.get("event") == "daemon_ready")
        assert (ready["fd_limit"], ready["fd_limit_was"]) == (hard, LOW_LIMIT)
        with daemon.client(timeout=60) as client:
            info = client.ping()
            assert info.fd_limit == hard and info.sessions == MANY
            assert info.fds_open > LOW_LIMIT  # past where it used to abort
            listed = client.list().sessions
            assert sum(s.status is p.SessionStatus.RUNNING for s in listed) == MANY
        _assert_new_clients_are_answered(daemon, 50)
    finally:
        code = daemon.stop(timeout=180)
    assert code == 0, daemon.log_lines[-5:]
    _assert_footered(started, p.SessionStatus.TERMINATED)
    statuses = _statuses_after_restart(short_tmp)
    assert {statuses[s.id] for s in started} == {p.SessionStatus.TERMINATED}


@needs_prlimit
@pytest.mark.timeout(300)
def test_starts_past_the_budget_are_refused_when_the_limit_cannot_be_raised(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, "--grace", "2", wrapper=_nofile(LOW_LIMIT, LOW_LIMIT))
    try:
        started, refused = _start_many(daemon, 400)
        assert len(started) >= 150, (len(started), refused[:3])
        assert refused and set(refused) == {"too_many_open_files"}
        with daemon.client(timeout=60) as client:
            info = client.ping()
            assert (info.fd_limit, info.sessions) == (LOW_LIMIT, len(started))
            # Sessions stop short of the reserve; a few connections (this one) dip into it.
            assert info.fds_open < LOW_LIMIT - info.fd_reserve // 2
            with pytest.raises(AgentplexError) as caught:
                client.start("exec", argv=SLEEP)
            assert caught.value.code == "too_many_open_files"
            assert "descriptors" in caught.value.message
        _assert_new_clients_are_answered(daemon, 60)
        transcripts = list((daemon.state_dir / "sessions").rglob("*.jsonl"))
        assert len(transcripts) == len(started)  # a refused start leaves no file
    finally:
        code = daemon.stop(timeout=180)
    assert code == 0, daemon.log_lines[-5:]
    _assert_footered(started, p.SessionStatus.TERMINATED)


def test_a_restart_after_crashes_holds_no_transcript_of_an_interrupted_session_open(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, "--grace", "1")
    baseline = _open_fds(daemon.process.pid)
    started: list[p.SessionInfo] = []
    for _round in range(2):
        more, refused = _start_many(daemon, 100)
        assert refused == []
        started += more
        _crash(daemon, more)
        daemon = start_daemon(short_tmp, "--grace", "1")
    try:
        with daemon.client(timeout=60) as client:
            statuses = {s.id: s.status for s in client.list().sessions}
            assert {statuses[s.id] for s in started} == {p.SessionStatus.INTERRUPTED}
        # 200 interrupted sessions used to hold 200 transcripts open
        assert _open_fds(daemon.process.pid) < baseline + 20
    finally:
        code = daemon.stop(timeout=120)
    assert code == 0, daemon.log_lines[-5:]
    # Parked, not lost: each transcript is reopened for its footer on the way out.
    _assert_footered(started, p.SessionStatus.TERMINATED)


def test_an_interrupted_turn_based_session_continues_after_its_transcript_was_parked(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, "--grace", "1")
    with daemon.client(timeout=60) as client:
        info = client.start("demo", prompt="first")
    _crash(daemon, [info])
    daemon = start_daemon(short_tmp, "--grace", "1")
    try:
        with daemon.client(timeout=60) as client, client.subscribe(p.SESSION_TOPIC) as events:
            assert client.inspect(info.id).status is p.SessionStatus.INTERRUPTED
            client.send("second", info.id)
            next_event(
                events,
                lambda e: isinstance(e, p.StatusChanged)
                and e.session_id == info.id
                and e.status is p.SessionStatus.IDLE,
                timeout=60,
            )
    finally:
        assert daemon.stop(timeout=60) == 0
    records = list(read_records(info.transcript))
    assert any(isinstance(r, p.MessageIn) and r.text == "second" for r in records)
    assert any(isinstance(r, p.Chunk | p.ChunkBatch) and r.turn == 2 for r in records)
    assert isinstance(records[-1], p.Footer)


@needs_prlimit
def test_refused_starts_on_a_full_disk_leak_no_descriptor_and_leave_no_transcript(
    short_tmp: Path,
) -> None:
    # Each file may hold 64 bytes: the lock's pid fits, no transcript header does.
    daemon = start_daemon(short_tmp, "--grace", "1", wrapper=["prlimit", "--fsize=64", "--"])
    try:
        with daemon.client(timeout=60) as client:
            client.ping()
            before = _open_fds(daemon.process.pid)
            for _ in range(30):
                with pytest.raises(AgentplexError) as caught:
                    client.start("exec", argv=SLEEP, tag="full")
                assert caught.value.code == "transcript_failed"
            assert _open_fds(daemon.process.pid) <= before
            assert client.ping().pid == daemon.process.pid
        assert list((daemon.state_dir / "sessions").rglob("*.jsonl")) == []
    finally:
        assert daemon.stop(timeout=60) == 0


@needs_prlimit
def test_the_raised_limit_is_reported_by_ping_doctor_and_metrics(short_tmp: Path) -> None:
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192)
    daemon = start_daemon(
        short_tmp, "--metrics-port", "0", wrapper=_nofile(min(LOW_LIMIT, hard), hard)
    )
    try:
        with daemon.client() as client:
            info = client.ping()
        assert (info.fd_limit, info.fd_reserve) == (hard, 128)
        assert 0 < info.fds_open < 100
        doctor = daemon.cli("doctor", "--json")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)}
        assert checks["descriptors"]["detail"].startswith(f"{info.fds_open}"), checks
        assert f"of {hard} open, 128 kept free" in checks["descriptors"]["detail"]
        url = next(str(r["url"]) for r in daemon.log_lines if r.get("event") == "metrics_listening")
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        assert f"process_max_fds {hard}" in text.splitlines()
        assert "agentplex_fd_reserve 128" in text.splitlines()
        fit = (hard - 128 - int(info.fds_open)) // 4
        capacity = next(line for line in text.splitlines() if line.startswith("agentplex_fd_s"))
        assert abs(int(capacity.split()[1]) - fit) <= 5, (capacity, fit)
    finally:
        assert daemon.stop() == 0
