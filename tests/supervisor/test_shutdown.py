"""SIGTERM to the daemon ends every session cleanly and exits 0."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from support import descendants_with_marker, next_event, start_daemon

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
