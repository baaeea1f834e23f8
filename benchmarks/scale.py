"""Scale: 500 concurrent idle sessions (``sleep 3600``): the daemon's RSS, its CPU % at
rest, and the ``list`` round-trip p50 / p99 (agentplex only).

    python benchmarks/scale.py [--quick] [--runs 5] [--json]

Sessions are started 50 requests at a time. "At rest" is a window after the starts
have settled (3 s) in which nothing is asked of the daemon. ``list`` is timed from a raw
DEALER: request encoded, reply received and decoded with the protocol's reply decoder
(what every client does), one request at a time.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from agentplex import protocol as p

from _harness import (
    AgentplexDaemon,
    Control,
    Measure,
    Options,
    Report,
    count_descendants,
    cpu_seconds,
    fixed,
    log,
    main,
    percentile,
    rss_bytes,
    runs_text,
    start_exec,
    wait_until,
    workdir,
)
from lifecycle import SLEEP
from throughput import zmq_context

BATCH = 50


def run(n: int, rest: float, lists: int) -> dict[str, Any]:
    with workdir() as base, AgentplexDaemon(base) as daemon, zmq_context() as ctx:
        control = Control(ctx, daemon.control_endpoint)
        rss_empty = rss_bytes(daemon.pid)
        t0 = time.perf_counter()
        for first in range(0, n, BATCH):
            size = min(BATCH, n - first)
            control.call_many([start_exec([SLEEP, "3600"], base) for _ in range(size)], 120)
        wait_until(lambda: count_descendants(daemon.pid, "sleep") == n, 60, 0.05, "sessions")
        start_s = time.perf_counter() - t0
        time.sleep(3.0 if rest > 2 else 0.5)
        cpu0, t1 = cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(rest)
        cpu_pct = (cpu_seconds(daemon.pid) - cpu0) / (time.perf_counter() - t1) * 100
        rss = rss_bytes(daemon.pid)
        ms = []
        for _ in range(lists):
            t2 = time.perf_counter()
            reply = control.call(p.ListSessions())
            ms.append((time.perf_counter() - t2) * 1000)
            assert isinstance(reply, p.Sessions) and len(reply.sessions) == n
        control.close()
        stop_s = daemon.stop()
        return {
            "start_all_s": start_s,
            "rss_mb": rss / 2**20,
            "rss_empty_mb": rss_empty / 2**20,
            "cpu_rest_pct": cpu_pct,
            "list_p50_ms": percentile(ms, 0.5),
            "list_p99_ms": percentile(ms, 0.99),
            "shutdown_s": stop_s,
        }


def measure(options: Options) -> Report:
    n, rest, lists = (10, 1.0, 20) if options.quick else (500, 10.0, 200)
    report = Report(
        f"Scale: {n} idle sessions, {lists} `list` calls, {rest:g} s at rest "
        f"({runs_text(options)})",
        ["system"],
        [
            Measure("start all s", "start_all_s", fixed(2)),
            Measure("RSS MB", "rss_mb", fixed(0)),
            Measure("RSS empty MB", "rss_empty_mb", fixed(0)),
            Measure("CPU % at rest", "cpu_rest_pct", fixed(2)),
            Measure("list p50 ms", "list_p50_ms", fixed(2)),
            Measure("list p99 ms", "list_p99_ms", fixed(2)),
            Measure("shutdown s", "shutdown_s", fixed(2)),
        ],
    )
    runs = []
    for i in range(options.runs):
        log(f"scale agentplex {n} sessions run {i + 1}/{options.runs}")
        runs.append(run(n, rest, lists))
    report.add(["agentplex"], runs)
    return report


if __name__ == "__main__":
    sys.exit(main("Scale benchmark", measure))
