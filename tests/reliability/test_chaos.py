"""Chaos: sessions streaming at full speed while the daemon is SIGKILLed and restarted;
starts raced by terminates; agents whose children flee their session every way they can.

Afterwards the transcripts and a follower that stayed subscribed throughout must agree:
no published chunk lost, none seen twice, and no process of any session left unowned.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support import DaemonProcess, descendants_with_marker, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient
from agentplex.client.transcripts import TranscriptDamage, read_chunks, read_records
from agentplex.protocol.errors import AgentplexError
from agentplex.supervisor.cgroups import CgroupTree

SESSIONS_PER_ROUND = 20
KILLS = 3
STREAM = "import sys\nfor i in range(20_000):\n    sys.stdout.write(f'{i} ' + 'z' * 60 + '\\n')\n"


class Follower:
    """One client that follows every session it is told about, across daemon restarts."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.seen: dict[str, list[p.Chunk]] = {}
        self._portal_ready = threading.Event()
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), daemon=True)
        self._sessions: list[str] = []
        self._all_told = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def follow(self, session_ids: list[str]) -> None:
        self._sessions.extend(session_ids)

    def finish(self, timeout: float) -> None:
        self._all_told.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "follower did not finish"
        if self.error:
            raise self.error

    async def _main(self) -> None:
        try:
            async with (
                AsyncClient(self.runtime_dir, timeout=5) as client,
                anyio.create_task_group() as tg,
            ):
                started: set[str] = set()
                while not (self._all_told.is_set() and started >= set(self._sessions)):
                    for sid in [s for s in self._sessions if s not in started]:
                        started.add(sid)
                        tg.start_soon(self._follow_one, client, sid)
                    await anyio.sleep(0.05)
        except BaseException as exc:  # reported to the test thread
            self.error = exc

    async def _follow_one(self, client: AsyncClient, sid: str) -> None:
        chunks = self.seen.setdefault(sid, [])
        async for chunk in client.follow(sid):
            chunks.append(chunk)


def _crash(daemon: DaemonProcess) -> None:
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    daemon.log_done.wait(10)


def test_no_chunk_is_lost_or_doubled_through_three_daemon_kills(short_tmp: Path) -> None:
    rng = random.Random(20261121)
    daemon = start_daemon(short_tmp)
    follower = Follower(daemon.runtime_dir)
    follower.start()
    all_sessions: list[str] = []
    for _round in range(KILLS):
        with daemon.client() as client:
            argv = [sys.executable, "-c", STREAM]
            ids = [
                client.start("exec", argv=argv, tag="chaos").id for _ in range(SESSIONS_PER_ROUND)
            ]
        all_sessions += ids
        follower.follow(ids)
        anyio.run(anyio.sleep, rng.uniform(0.2, 1.2))  # a random moment mid-stream
        _crash(daemon)
        daemon = start_daemon(short_tmp)
    try:
        follower.finish(timeout=300)
        checked = 0
        for sid in all_sessions:
            info_chunks = follower.seen[sid]
            seqs = [c.seq for c in info_chunks]
            assert len(seqs) == len(set(seqs)), f"{sid}: a chunk was seen twice"
            assert seqs == list(range(1, len(seqs) + 1)), f"{sid}: a gap"
            transcript = _transcript_of(daemon, sid)
            damage: list[TranscriptDamage] = []
            list(read_records(transcript, damage))
            logged = list(read_chunks(transcript))
            assert logged == info_chunks, f"{sid}: follower and transcript disagree"
            assert descendants_with_marker(sid) == []
            checked += len(logged)
        sessions = len(all_sessions)
        print(f"\nchaos: {checked} chunks checked, {KILLS} kills survived, {sessions} sessions")
        assert checked > 0
    finally:
        assert daemon.stop() == 0


def _transcript_of(daemon: DaemonProcess, sid: str) -> Path:
    (path,) = (daemon.state_dir / "sessions" / "chaos").glob(f"{sid}-*.jsonl")
    return path


# ---------------------------------------------------------------- nothing escapes

FLEEING_AGENT = """
echo $$ >> "$CHAOS_PIDS"
setsid env -i CHAOS_PIDS="$CHAOS_PIDS" sh -c 'echo $$ >> "$CHAOS_PIDS"; exec sleep 300' &
sh -c 'setsid sh -c "echo \\$\\$ >> \\"\\$CHAOS_PIDS\\"; exec sleep 300" & exit 0' &
sh -c 'trap "" TERM; echo $$ >> "$CHAOS_PIDS"; exec sleep 300' &
echo ready
if [ "$1" = exit ]; then exit 3; fi
exec sleep 300
"""
"""Every process it makes carries ``CHAOS_PIDS`` (even past ``env -i``) and logs its pid:
one that clears its environment, one that double-forks into a new session, one that
ignores SIGTERM; then the leader exits, or waits to be terminated."""


@pytest.fixture(params=["cgroup", "tree"])
def tracking(request: pytest.FixtureRequest) -> str:
    if request.param == "cgroup" and CgroupTree.detect() is None:
        pytest.skip("no cgroup v2 hierarchy this daemon may manage")
    return str(request.param)


@pytest.fixture
def fleeing_agent(short_tmp: Path) -> Iterator[tuple[list[str], Path]]:
    script, pids = short_tmp / "flee.sh", short_tmp / "pids"
    script.write_text(FLEEING_AGENT)
    yield ["sh", str(script)], pids


def test_no_process_outlives_racing_starts_and_fleeing_children(
    short_tmp: Path, tracking: str, fleeing_agent: tuple[list[str], Path]
) -> None:
    argv, pids = fleeing_agent
    env = {"AGENTPLEX_PROCESS_TRACKING": tracking}
    daemon = start_daemon(short_tmp, "--grace", "1", env=env)
    try:
        anyio.run(_race_round, daemon, argv, pids, 20)
        anyio.run(_escape_round, daemon, argv, pids, 10)
    finally:
        assert daemon.stop(timeout=90) == 0
    left = _marked_processes(str(pids))
    assert left == [], f"processes outlived their sessions and the daemon: {left}"
    logged = {int(pid) for pid in pids.read_text().split()}
    assert len(logged) > 20
    print(f"\nchaos ({tracking}): {len(logged)} session processes, none left")


async def _race_round(daemon: DaemonProcess, argv: list[str], pids: Path, rounds: int) -> None:
    """Start a fleeing agent and at once terminate the active session, over two clients."""
    env = {"CHAOS_PIDS": str(pids)}
    async with (
        AsyncClient(daemon.runtime_dir, timeout=90) as starter,
        AsyncClient(daemon.runtime_dir, timeout=90) as stopper,
    ):

        async def start(mode: str) -> None:
            await starter.start("exec", argv=[*argv, mode], env=env)

        async def terminate() -> None:
            try:
                await stopper.terminate(None, grace=0.5)
            except AgentplexError as exc:
                assert exc.code == "no_active_session", exc

        for i in range(rounds):
            async with anyio.create_task_group() as tg:
                tg.start_soon(start, "exit" if i % 2 else "stay")
                tg.start_soon(terminate)


async def _escape_round(daemon: DaemonProcess, argv: list[str], pids: Path, count: int) -> None:
    """Agents that leave fleeing children and exit, and agents terminated all at once."""
    env = {"CHAOS_PIDS": str(pids)}
    before = _logged(pids)
    async with AsyncClient(daemon.runtime_dir, timeout=90) as client:
        staying = [
            (await client.start("exec", argv=[*argv, mode], env=env)).id
            for mode in ("exit", "stay") * count
        ][1::2]
        deadline = time.monotonic() + 60
        while _logged(pids) < before + 4 * count:  # the staying ones' at least
            assert time.monotonic() < deadline, "the agents' children did not start"
            await anyio.sleep(0.05)

        async def terminate(session_id: str) -> None:
            await client.terminate(session_id, grace=0.5)

        async with anyio.create_task_group() as tg:
            for session_id in staying:
                tg.start_soon(terminate, session_id)


def _logged(pids: Path) -> int:
    """How many pids the agents have logged so far."""
    return len(pids.read_text().split())


def _marked_processes(pids_file: str) -> list[int]:
    """Walk /proc: every live process whose environment names this test's pid file."""
    mark = f"CHAOS_PIDS={pids_file}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if mark in environ and state != b"Z":
            found.append(int(entry))
    return found
