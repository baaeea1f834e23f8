"""After kill -9 and a restart, every session is back and nothing runs unowned."""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import anyio
import psutil
import pytest
from support import DaemonProcess, descendants_with_marker, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import AsyncClient
from agentplex.client.transcripts import TranscriptDamage, read_records

GRANDCHILD = (
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    print(f'tool {os.getpid()}', flush=True)\n"
    "    time.sleep(300)\n"
    "    sys.exit(0)\n"
    "sys.stdin.read()\n"
)


def _crash(daemon: DaemonProcess) -> None:
    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(timeout=10) == -signal.SIGKILL
    daemon.log_done.wait(10)


def test_sessions_come_back_after_kill_9_and_nothing_is_left_unowned(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp)
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        demo = client.start("demo", "remember the word apricot", tag="crash")
        next_event(
            events,
            lambda e: (
                isinstance(e, p.StatusChanged)
                and e.session_id == demo.id
                and e.status is p.SessionStatus.IDLE
            ),
        )
        live = client.start("exec", argv=[sys.executable, "-c", GRANDCHILD], tag="crash")
        tool = next_event(events, is_chunk(live.id, text="tool"))
        ended = client.start("exec", argv=["cat"], tag="crash")
        client.terminate(ended.id)
    _crash(daemon)
    tool_pid = int(tool.text.split()[1])  # type: ignore[union-attr]

    restarted = start_daemon(short_tmp)
    try:
        with restarted.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            sessions = {s.id: s for s in client.list().sessions}
            assert sessions[demo.id].status is p.SessionStatus.INTERRUPTED
            assert sessions[live.id].status is p.SessionStatus.INTERRUPTED
            assert sessions[ended.id].status is p.SessionStatus.TERMINATED
            for sid in (demo.id, live.id, ended.id):
                assert descendants_with_marker(sid) == []
            assert not _alive(tool_pid)

            demo_chunks = sessions[demo.id].chunks
            client.send("what was the word?", demo.id)
            result = next_event(events, is_chunk(demo.id, p.ChunkKind.RESULT))
            assert "Turn 2" in result.text and "apricot" in result.text  # type: ignore[union-attr]
            assert result.seq > demo_chunks  # type: ignore[union-attr]
            client_chunks = [c.seq for c in client.follow(live.id)]
        assert client_chunks == list(range(1, len(client_chunks) + 1))
        kinds = [type(r).__name__ for r in read_records(sessions[live.id].transcript)]
        assert "Recovered" in kinds
    finally:
        assert restarted.stop() == 0


def test_a_torn_last_transcript_line_is_reported_and_never_fatal(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp)
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("demo", "first", tag="torn")
        next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
    _crash(daemon)
    with open(info.transcript, "ab") as f:
        f.write(b'{"type":"agent.chunk","session_id":"' + info.id.encode() + b'","se')

    restarted = start_daemon(short_tmp)
    try:
        with restarted.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            client.send("second", info.id)
            next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
            page = client.replay(info.id, 1, limit=100_000)
            seqs = [c.seq for raw in page.chunks for c in p.expand(p.chunk_decoder.decode(raw))]
            assert seqs == list(range(1, page.last_seq + 1))
        damage: list[TranscriptDamage] = []
        records = list(read_records(info.transcript, damage))
        assert len(damage) == 1
        recovered = [r for r in records if isinstance(r, p.Recovered)]
        assert recovered and recovered[0].damaged_lines == 1
        chunk_seqs = [r.seq for r in records if isinstance(r, p.Chunk)]
        assert chunk_seqs == list(range(1, len(chunk_seqs) + 1))
    finally:
        assert restarted.stop() == 0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_exe(pid: int, name: str, timeout: float = 10.0) -> None:
    """Wait until ``pid`` runs the program ``name`` (a wrapper before it has exec'd it)."""
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).name() != name:
        assert time.monotonic() < deadline, f"{pid} never ran {name}"
        time.sleep(0.01)


def _gone_within(pid: int, timeout: float) -> bool:
    """Whether ``pid`` ends within ``timeout`` (a pidfd turns readable when it does)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0]) or not _alive(pid)
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["setpriv", "preexec_fn"])
def test_agents_die_with_a_daemon_killed_by_sigkill(short_tmp: Path, how: str) -> None:
    env = {}
    if how == "preexec_fn":  # no setpriv on its PATH: the daemon sets the signal itself
        env["PATH"] = str(short_tmp)
    daemon = start_daemon(short_tmp, env=env)
    ready = next(line for line in daemon.log_lines if line.get("event") == "daemon_ready")
    assert ready["agents_die_with_daemon"] == how
    with daemon.client() as client:
        agents = [client.start("exec", argv=["/bin/sleep", "3600"]) for _ in range(3)]
    for agent in agents:  # running sleep: setpriv has set the death signal and exec'd it
        _wait_for_exe(agent.pid, "sleep")  # type: ignore[arg-type]
    _crash(daemon)
    for agent in agents:
        assert _gone_within(agent.pid, 10), f"agent {agent.pid} outlived the daemon"  # type: ignore[arg-type]


def test_a_session_whose_transcript_directory_was_removed_comes_back_interrupted(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp)
    with daemon.client() as client:
        info = client.start("exec", argv=["cat"], tag="removed")
    _crash(daemon)
    shutil.rmtree(Path(info.transcript).parent)

    restarted = start_daemon(short_tmp)
    try:
        with restarted.client() as client:
            (back,) = client.list().sessions
            assert back.id == info.id and back.status is p.SessionStatus.INTERRUPTED
            again = client.start("exec", argv=["true"], tag="removed")
            assert Path(again.transcript).exists()
        logged = [
            line for line in restarted.log_lines if line.get("event") == "transcript_unavailable"
        ]
        assert logged and logged[0]["session_id"] == info.id
    finally:
        assert restarted.stop() == 0


def test_a_follow_begun_while_the_daemon_is_down_completes_once_it_is_back(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp)
    with daemon.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start(
            "exec", argv=[sys.executable, "-c", "print('\\n'.join(map(str, range(500))))"]
        )
        next_event(events, lambda e: isinstance(e, p.SessionTerminated) and e.session.id == info.id)

    async def scenario() -> list[int]:
        async with AsyncClient(daemon.runtime_dir, timeout=2) as client:
            _crash(daemon)
            seqs: list[int] = []
            async with anyio.create_task_group() as tg:

                async def restart_soon() -> None:
                    await anyio.sleep(1.0)  # the follower is meanwhile retrying
                    restarted.append(start_daemon(short_tmp))

                tg.start_soon(restart_soon)
                async for chunk in client.follow(info.id):
                    seqs.append(chunk.seq)
            return seqs

    restarted: list[DaemonProcess] = []
    try:
        assert anyio.run(scenario) == list(range(1, 501))
    finally:
        for again in restarted:
            assert again.stop() == 0


def test_an_agent_configured_to_outlive_the_daemon_is_re_adopted_after_a_crash(
    short_tmp: Path,
) -> None:
    outlive = {"AGENTPLEX_AGENTS_OUTLIVE_DAEMON": "true"}
    daemon = start_daemon(short_tmp, env=outlive)
    with daemon.client() as client:
        info = client.start("exec", argv=["sleep", "300"], tag="outlive")
    _crash(daemon)
    assert _alive(info.pid)  # type: ignore[arg-type]

    restarted = start_daemon(short_tmp, env=outlive)
    try:
        with restarted.client() as client:
            again = client.inspect(info.id)
            assert (again.status, again.pid) == (p.SessionStatus.RUNNING, info.pid)
            reply = client.terminate(info.id, grace=2)
            assert reply.session.status is p.SessionStatus.TERMINATED
        assert not _alive(info.pid)  # type: ignore[arg-type]
        recovered = [r for r in read_records(info.transcript) if isinstance(r, p.Recovered)]
        assert recovered[0].status is p.SessionStatus.RUNNING
    finally:
        assert restarted.stop() == 0
