"""Chaos: sessions streaming at full speed while the daemon is SIGKILLed and restarted.

Afterwards the transcripts and a follower that stayed subscribed throughout must agree:
no published chunk lost, none seen twice, and no process of any session left unowned.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from pathlib import Path

import anyio
from support import DaemonProcess, descendants_with_marker, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient
from agentplex.client.transcripts import TranscriptDamage, read_chunks, read_records

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
