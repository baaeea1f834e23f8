"""Lifecycle: start 100 sessions until all are running, terminate them all until no process
is left, and the time from a child's death to the supervisor reporting it.

    python benchmarks/lifecycle.py [--quick] [--runs 5] [--json] [--no-peers]

The child is ``sleep 3600`` (output captured as in the throughput benchmark). "All
running" means the supervisor said so (agentplex: every ``start`` reply; circus: ``start``
with ``waiting``; supervisord: ``startProcessGroup(wait=True)``, ``startsecs=0``) *and* a
scan of its descendants finds every ``sleep``; "all gone" likewise with ``terminate`` /
``stop`` / ``stopProcessGroup`` and no ``sleep`` left. Requests go out all at once.

Death: with 100 fresh children running, the benchmark SIGKILLs one every 10 ms and notes
when the supervisor's own report arrives: agentplex ``session.status_changed`` (a raw SUB),
circus ``watcher.<name>.reap`` on its pubsub endpoint, supervisord a
``PROCESS_STATE_EXITED`` event at an event listener (``_supervisor_listener.py``).
Everything is left at each system's defaults otherwise (circus ``check_delay`` 5 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from agentplex import protocol as p

from _harness import (
    AgentplexDaemon,
    Control,
    Measure,
    Options,
    Report,
    count_descendants,
    fixed,
    main,
    percentile,
    run_in_turns,
    runs_text,
    start_exec,
    subscriber,
    wait_until,
    workdir,
)
from _peers import Circus, Program, Supervisord, Watcher, available
from throughput import skipped_peers, zmq_context

SLEEP = shutil.which("sleep") or "/bin/sleep"
KILL_INTERVAL = 0.01
REPORT_TIMEOUT = 20.0
ENDED = {p.SessionStatus.EXITED, p.SessionStatus.FAILED, p.SessionStatus.TERMINATED}

Collect = Callable[[dict[int, int], float], None]
"""Adds (pid -> CLOCK_MONOTONIC ns the death was reported) for reports that arrive
within the given number of seconds."""


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def timed(action: Callable[[], object], condition: Callable[[], bool]) -> float:
    """Seconds from the start of ``action`` until ``condition`` holds."""
    t0 = time.perf_counter()
    action()
    wait_until(condition, 120, 0.005, "the processes")
    return time.perf_counter() - t0


def kill_one_by_one(pids: list[int], collect: Collect) -> dict[str, Any]:
    """SIGKILL each pid in turn; the delay from each kill to its reported death."""
    killed: dict[int, int] = {}
    reported: dict[int, int] = {}
    for pid in pids:
        killed[pid] = now_ns()
        os.kill(pid, signal.SIGKILL)
        collect(reported, KILL_INTERVAL)
    deadline = time.monotonic() + REPORT_TIMEOUT
    while len(reported.keys() & killed.keys()) < len(killed) and time.monotonic() < deadline:
        collect(reported, 0.05)
    ms = [(reported[pid] - killed[pid]) / 1e6 for pid in killed if pid in reported]
    return {
        "death_p50_ms": percentile(ms, 0.5) if ms else None,
        "death_p99_ms": percentile(ms, 0.99) if ms else None,
        "death_max_ms": max(ms) if ms else None,
        "unreported": len(killed) - len(ms),
    }


def sub_collector(sub: zmq.Socket[bytes], pid_of: Callable[[bytes, bytes], int | None]) -> Collect:
    """Reports from a SUB socket; ``pid_of(topic, payload)`` names the dead pid, if any."""

    def collect(reported: dict[int, int], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and sub.poll(int(left * 1000) + 1):
            topic, payload = sub.recv_multipart()
            at = now_ns()
            pid = pid_of(topic, payload)
            if pid is not None:
                reported.setdefault(pid, at)

    return collect


# --------------------------------------------------------------------------- systems


def run_agentplex(n: int) -> dict[str, Any]:
    with workdir() as base, AgentplexDaemon(base) as daemon, zmq_context() as ctx:
        control = Control(ctx, daemon.control_endpoint)
        starts = [start_exec([SLEEP, "3600"], base) for _ in range(n)]
        sessions: list[p.SessionInfo] = []

        def start() -> None:
            replies = control.call_many(starts, 120)
            sessions[:] = [r.session for r in replies if isinstance(r, p.Started)]

        def running() -> bool:
            return count_descendants(daemon.pid, "sleep") == n

        def gone() -> bool:
            return count_descendants(daemon.pid, "sleep") == 0

        start_s = timed(start, running)
        terms = [p.Terminate(session=s.id) for s in sessions]
        stop_s = timed(lambda: control.call_many(terms, 120), gone)
        timed(start, running)
        pid_of_session = {s.id: s.pid for s in sessions}
        sub = daemon.subscribe(ctx, control, b"session.status_changed.")

        def dead_pid(_topic: bytes, payload: bytes) -> int | None:
            event = p.event_decoder.decode(payload)
            if isinstance(event, p.StatusChanged) and event.status in ENDED:
                return pid_of_session.get(event.session_id)
            return None

        pids = [s.pid for s in sessions if s.pid is not None]
        deaths = kill_one_by_one(pids, sub_collector(sub, dead_pid))
        return {"start_s": start_s, "stop_s": stop_s, **deaths}


def run_circus(n: int) -> dict[str, Any]:
    with workdir() as base, zmq_context() as ctx:
        stream = ("pub", f"ipc://{base / 'lines.sock'}")
        watcher = Watcher("s", SLEEP, ["3600"], n, stream, autostart=False)
        with Circus(base, [watcher]) as circus:

            def count() -> int:
                return count_descendants(circus.pid, "sleep")

            start = lambda: circus.call("start", name="s", waiting=True)  # noqa: E731
            start_s = timed(start, lambda: count() == n)
            stop_s = timed(
                lambda: circus.call("stop", name="s", waiting=True), lambda: count() == 0
            )
            timed(start, lambda: count() == n)
            sub = subscriber(ctx, circus.pubsub_endpoint, b"watcher.s.reap", handshake=True)

            def dead_pid(_topic: bytes, payload: bytes) -> int | None:
                return int(json.loads(payload)["process_pid"])

            pids = [int(pid) for pid in circus.call("list", name="s")["pids"]]
            deaths = kill_one_by_one(pids, sub_collector(sub, dead_pid))
            return {"start_s": start_s, "stop_s": stop_s, **deaths}


def run_supervisord(n: int) -> dict[str, Any]:
    with workdir() as base:
        program = Program("s", f"{SLEEP} 3600", n, autostart=False)
        deaths_file = base / "deaths"
        with Supervisord(base, [program], deaths_file) as sd:

            def count() -> int:
                return count_descendants(sd.pid, "sleep")

            start = lambda: sd.rpc.supervisor.startProcessGroup("s", True)  # noqa: E731
            start_s = timed(start, lambda: count() == n)
            stop_s = timed(
                lambda: sd.rpc.supervisor.stopProcessGroup("s", True), lambda: count() == 0
            )
            timed(start, lambda: count() == n)
            deaths = kill_one_by_one(sd.pids("s"), file_collector(deaths_file))
            return {"start_s": start_s, "stop_s": stop_s, **deaths}


def file_collector(path: Path) -> Collect:
    """Reports the event listener appended to ``path`` (``<pid> <ns>`` lines)."""
    seen = [0]

    def collect(reported: dict[int, int], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if path.exists():
                lines = path.read_text().splitlines()
                for line in lines[seen[0] :]:
                    pid, at = line.split()
                    reported.setdefault(int(pid), int(at))
                seen[0] = len(lines)
            if time.monotonic() >= deadline:
                return
            time.sleep(0.002)

    return collect


def systems(options: Options) -> list[tuple[str, Callable[[int], dict[str, Any]]]]:
    found: list[tuple[str, Callable[[int], dict[str, Any]]]] = [("agentplex", run_agentplex)]
    if options.peers and available("circusd"):
        found.append(("circus", run_circus))
    if options.peers and available("supervisord"):
        found.append(("supervisord", run_supervisord))
    return found


def measure(options: Options) -> Report:
    n = 5 if options.quick else 100
    report = Report(
        f"Lifecycle: {n} sessions of `sleep 3600` ({runs_text(options)})",
        ["system"],
        [
            Measure("start all s", "start_s", fixed(3)),
            Measure("terminate all s", "stop_s", fixed(3)),
            Measure("death→report p50 ms", "death_p50_ms", fixed(1)),
            Measure("p99 ms", "death_p99_ms", fixed(1)),
            Measure("max ms", "death_max_ms", fixed(1)),
            Measure("unreported", "unreported", fixed(0)),
        ],
    )
    run_in_turns(report, [], systems(options), n, options.runs, "lifecycle")
    report.notes += skipped_peers(options)
    return report


if __name__ == "__main__":
    sys.exit(main("Lifecycle benchmark", measure))
