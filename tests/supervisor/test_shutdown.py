"""SIGTERM to the daemon ends every session cleanly and exits 0; a second SIGTERM or
SIGINT while it stops kills every session at once and exits 128 + that signal."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import DaemonProcess, descendants_with_marker, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client.transcripts import read_records

STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)"
)
GRACE = 1.0


def test_sigterm_with_ten_live_sessions_exits_zero_in_time_leaving_nothing(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, "--grace", str(GRACE))
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        sessions = []
        for i in range(10):
            argv = [sys.executable, "-c", STUBBORN] if i % 2 else ["sleep", "300"]
            sessions.append(client.start("exec", argv=argv, tag="shutdown"))
        waiting = {info.id for info in sessions[1::2]}

        def all_ready(event: p.Event) -> bool:
            if isinstance(event, p.Chunk) and event.text == "ready":
                waiting.discard(event.session_id)
            return not waiting

        next_event(events, all_ready)

    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=GRACE + 10)
    daemon.log_done.wait(10)
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < GRACE + 2, elapsed
    for info in sessions:
        assert descendants_with_marker(info.id) == []
        last = list(read_records(info.transcript))[-1]
        assert isinstance(last, p.Footer)
        assert last.reason == "daemon shutting down"
    assert not (daemon.runtime_dir / "control.sock").exists()


# ------------------------------------------------- a second signal while stopping

IGNORES_TERM = 'trap "" TERM; echo ready; while :; do sleep 0.1; done'
"""An agent that ignores SIGTERM (its children inherit that), after saying it does."""
LEAVES_A_STRAY = (
    'trap "" TERM; setsid sh -c "while :; do sleep 0.1; done" & echo ready; '
    "while :; do sleep 0.1; done"
)
"""The same, plus a process outside its group that ignores SIGTERM too (a stray)."""
LONG_GRACE = 30.0


def _wait_for_log(daemon: DaemonProcess, event: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(line.get("event") == event for line in list(daemon.log_lines)):
        assert time.monotonic() < deadline, f"no {event!r} log line within {timeout} s"
        assert daemon.process.poll() is None, f"daemon exited before {event!r}"
        time.sleep(0.01)


def _alive_in_group(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose pid or process group is ``pgid``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and pgid in (proc.pid, os.getpgid(proc.pid)):
                found.append(proc)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return found


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGINT, signal.SIGINT),
    ],
    ids=lambda sig: sig.name,
)
def test_a_second_signal_while_stopping_kills_every_session_at_once_and_exits_128_plus_it(
    short_tmp: Path, first: signal.Signals, second: signal.Signals
) -> None:
    daemon = start_daemon(short_tmp, "--grace", str(LONG_GRACE))
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        sessions = [
            client.start("exec", argv=["sh", "-c", script], tag="escalate")
            for script in (IGNORES_TERM, LEAVES_A_STRAY)
        ]
        for info in sessions:
            next_event(events, is_chunk(info.id, text="ready"))
    daemon.process.send_signal(first)
    _wait_for_log(daemon, "daemon_stopping")

    started = time.monotonic()
    daemon.process.send_signal(second)
    code = daemon.process.wait(timeout=LONG_GRACE)
    elapsed = time.monotonic() - started
    daemon.log_done.wait(10)

    assert code == 128 + second, daemon.log_lines[-5:]
    assert elapsed < 1.0, elapsed
    for info in sessions:
        assert info.pid is not None
        assert _alive_in_group(info.pid) == []
        assert descendants_with_marker(info.id) == []
        last = list(read_records(info.transcript))[-1]
        assert isinstance(last, p.Footer)
        assert last.status is p.SessionStatus.TERMINATED
        assert last.reason == "daemon shutting down (killed at once)"
