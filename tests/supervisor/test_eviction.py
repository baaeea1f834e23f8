"""Ended sessions leave the daemon's memory and ``list`` after ``keep_ended`` (their
transcripts and table records stay: ``list --all``, ``inspect`` and ``replay`` still find
them), across restarts too; interrupted sessions never hold ``max_sessions`` slots."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.protocol import errors as e

LINE = "x" * 99
"""What every output line says: with its newline, 100 bytes."""
MB_OF_LINES = ["sh", "-c", f"yes {LINE} | head -c 1000000"]
"""An agent that prints 1 MB: 10,000 lines of ``LINE``."""
KEEP_NOTHING = {"AGENTPLEX_KEEP_ENDED": "0"}
WAIT = 60.0
"""Generous deadlines: CI has 2 cores, shared."""


def _rss(daemon: DaemonProcess) -> int:
    return int(psutil.Process(daemon.process.pid).memory_info().rss)


def _ended(events: SyncSubscription, count: int) -> set[str]:
    """The ids of the next ``count`` sessions to end."""
    ended = set()
    for _ in range(count):
        event = next_event(events, lambda ev: isinstance(ev, p.SessionTerminated), WAIT)
        assert isinstance(event, p.SessionTerminated)
        ended.add(event.session.id)
    return ended


def _run_wave(client: Client, events: SyncSubscription, size: int, argv: list[str]) -> list[str]:
    """Start ``size`` sessions of ``argv`` at once and wait until every one has ended."""
    ids = [client.start("exec", argv=argv, tag="wave").id for _ in range(size)]
    assert _ended(events, size) == set(ids)
    return ids


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll a daemon-side condition (eviction publishes no event of its own) with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def _chunk_texts(client: Client, session_id: str) -> list[str]:
    chunks = list(client.follow(session_id))
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    return [c.text for c in chunks]


def test_many_ended_sessions_cost_no_memory_and_leave_ls_yet_replay_from_disk(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, env=KEEP_NOTHING)
    try:
        with daemon.client(timeout=WAIT) as client, client.subscribe(
            "session.terminated.", "session.list_changed"
        ) as events:
            ids = _run_wave(client, events, 20, MB_OF_LINES)  # warms the allocator up
            before = _rss(daemon)
            for _ in range(14):  # 280 more sessions, each printing 1 MB
                ids += _run_wave(client, events, 20, MB_OF_LINES)
            grown = _rss(daemon) - before
            # Kept, every ended session held its replay ring and info: 111 MiB more here
            # (4,096 chunks of 100 bytes each, and their envelopes); evicted, about 2 MiB.
            assert grown < 32 << 20, f"daemon RSS grew {grown >> 20} MiB for 280 MB printed"
            _wait_until(lambda: client.list().sessions == [], "every session evicted")
            listed = next_event(
                events,
                lambda ev: isinstance(ev, p.SessionListChanged) and not ev.sessions,
                WAIT,
            )
            assert isinstance(listed, p.SessionListChanged)

            everything = client.list(all=True).sessions
            assert [s.id for s in everything] == ids
            assert all(s.status is p.SessionStatus.EXITED for s in everything)
            assert all(s.chunks == 10_000 for s in everything)
            texts = _chunk_texts(client, ids[7])  # history, now from its transcript alone
            assert texts == [LINE] * 10_000
    finally:
        assert daemon.stop() == 0


def test_an_evicted_session_is_still_found_by_prefix_and_refuses_what_an_ended_one_refuses(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, env=KEEP_NOTHING)
    try:
        with daemon.client(timeout=WAIT) as client, client.subscribe(
            "session.terminated."
        ) as events:
            (sid,) = _run_wave(client, events, 1, ["echo", "hello"])
            _wait_until(lambda: client.list().sessions == [], "the session evicted")
            assert client.inspect(sid[:8]).status is p.SessionStatus.EXITED
            page = client.replay(sid[:8], 1, limit=10)
            assert page.ended and page.last_seq == 1
            assert [c.text for c in p.expand(p.chunk_decoder.decode(page.chunks[0]))] == [
                "hello"
            ]
            with pytest.raises(e.SessionEnded):
                client.send("more", sid)
            reply = client.terminate(sid)
            assert reply.session.status is p.SessionStatus.EXITED and not reply.escalated
            with pytest.raises(e.UnknownSession):
                client.inspect("ffffffff-no-such-session")
    finally:
        assert daemon.stop() == 0


def test_after_a_restart_sessions_past_keep_ended_are_only_in_ls_all(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp)  # the default keep_ended: hours
    try:
        with daemon.client(timeout=WAIT) as client, client.subscribe(
            "session.terminated."
        ) as events:
            ids = _run_wave(client, events, 3, ["echo", "kept on disk"])
            assert {s.id for s in client.list().sessions} == set(ids)  # recent: still listed
            running = client.start("exec", argv=["cat"]).id
    finally:
        assert daemon.stop() == 0  # ends `running` too (terminated, just now)

    restarted = start_daemon(short_tmp, env={"AGENTPLEX_KEEP_ENDED": "3600"})
    try:
        with restarted.client(timeout=WAIT) as client:
            assert {s.id for s in client.list().sessions} == {*ids, running}
    finally:
        assert restarted.stop() == 0

    restarted = start_daemon(short_tmp, env=KEEP_NOTHING)
    try:
        with restarted.client(timeout=WAIT) as client:
            assert client.list().sessions == []
            everything = client.list(all=True).sessions
            assert [s.id for s in everything] == [*ids, running]
            assert everything[-1].status is p.SessionStatus.TERMINATED
            assert _chunk_texts(client, ids[1]) == ["kept on disk"]
    finally:
        assert restarted.stop() == 0


def test_interrupted_sessions_do_not_hold_max_sessions_slots(short_tmp: Path) -> None:
    limit = ["--max-sessions", "20"]
    daemon = start_daemon(short_tmp, *limit)
    with daemon.client(timeout=WAIT) as client:
        crashed = [client.start("exec", argv=["sleep", "3600"]).id for _ in range(20)]
        with pytest.raises(e.TooManySessions):
            client.start("exec", argv=["sleep", "3600"])
    daemon.process.send_signal(signal.SIGKILL)  # its agents die with it
    assert daemon.process.wait(timeout=WAIT) == -signal.SIGKILL
    daemon.log_done.wait(WAIT)

    restarted = start_daemon(short_tmp, *limit)
    try:
        with restarted.client(timeout=WAIT) as client:
            statuses = {s.id: s.status for s in client.list().sessions}
            assert all(statuses[sid] is p.SessionStatus.INTERRUPTED for sid in crashed)
            fresh = [client.start("exec", argv=["sleep", "3600"]).id for _ in range(20)]
            assert all(client.inspect(sid).status is p.SessionStatus.RUNNING for sid in fresh)
            with pytest.raises(e.TooManySessions):  # live sessions still count
                client.start("exec", argv=[sys.executable, "-c", "pass"])
    finally:
        assert restarted.stop() == 0
