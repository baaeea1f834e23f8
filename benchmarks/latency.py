"""Latency: 10 sessions writing stamped 100-byte lines at 1,000 lines/s in total; for each
line, child write -> subscriber receive, from the CLOCK_MONOTONIC stamp the child put at
the start of the line. p50 / p90 / p99 / max per run.

    python benchmarks/latency.py [--quick] [--runs 5] [--json] [--no-peers]

The subscriber is the same as in the throughput benchmark (one raw SUB; agentplex chunks
decoded with the protocol's decoder). supervisord writes to files: there the "receive"
is the moment inotify reports the write to the log file and the line is read back.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentplex import protocol as p

import _receive
from _bare import Publisher
from _harness import (
    CHILD,
    PYTHON,
    AgentplexDaemon,
    Control,
    Gate,
    Measure,
    Options,
    Report,
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

SESSIONS = 10
TOTAL_RATE = 1000.0


@dataclass(frozen=True)
class Workload:
    seconds: float

    @property
    def per_child(self) -> int:
        return int(TOTAL_RATE / SESSIONS * self.seconds)

    @property
    def expected(self) -> int:
        return self.per_child * SESSIONS

    def argv(self, gate: Gate, slot: str) -> list[str]:
        rate = str(TOTAL_RATE / SESSIONS)
        return [
            PYTHON,
            CHILD,
            "stamped",
            rate,
            str(self.seconds),
            slot,
            str(SESSIONS),
            *gate.child_args(),
        ]


Run = Callable[[Workload], dict[str, Any]]


def result(got: _receive.Delivery, expected: int) -> dict[str, Any]:
    ms = [ns / 1e6 for ns in got.latencies_ns]
    if not ms:
        return {"lost": expected}
    return {
        "p50_ms": percentile(ms, 0.50),
        "p90_ms": percentile(ms, 0.90),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "samples": len(ms),
        "lost": expected - got.lines,
    }


def run_agentplex(w: Workload) -> dict[str, Any]:
    with (
        workdir() as base,
        AgentplexDaemon(base) as daemon,
        Gate(base) as gate,
        zmq_context() as ctx,
    ):
        control = Control(ctx, daemon.control_endpoint)
        sub = daemon.subscribe(ctx, control, p.CHUNK_TOPIC)
        control.call_many([start_exec(w.argv(gate, str(i)), base) for i in range(SESSIONS)])
        gate.wait_ready(SESSIONS)
        gate.release()
        return result(_receive.chunk_latencies(sub, w.expected), w.expected)


def run_circus(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate, zmq_context() as ctx:
        endpoint = f"ipc://{base / 'lines.sock'}"
        argv = w.argv(gate, "$(circus.wid)")
        watcher = Watcher("w", argv[0], argv[1:], SESSIONS, ("pub", endpoint))
        with Circus(base, [watcher]):
            sub = subscriber(ctx, endpoint, handshake=True)
            gate.wait_ready(SESSIONS)
            gate.release()
            return result(_receive.blob_latencies(sub, w.expected), w.expected)


def run_supervisord(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate:
        program = Program("w", " ".join(w.argv(gate, "%(process_num)d")), SESSIONS)
        paths = [program.log_path(base, i) for i in range(SESSIONS)]
        with Supervisord(base, [program]):
            gate.wait_ready(SESSIONS)
            wait_until(lambda: all(path.exists() for path in paths), 10, 0.01, "log files")
            receive = _receive.file_latencies
            gate.release()
            return result(receive(paths, w.expected), w.expected)


def bare_pipeline(mode: str) -> Run:
    def run(w: Workload) -> dict[str, Any]:
        with workdir() as base, Gate(base) as gate, zmq_context() as ctx:
            endpoint = f"ipc://{base / 'bare.sock'}"
            (base / "out").mkdir()
            argvs = json.dumps([w.argv(gate, str(i)) for i in range(SESSIONS)])
            publisher = Publisher([mode, endpoint, str(base / "out"), argvs], base)
            try:
                sub = subscriber(ctx, endpoint)
                publisher.wait_ready()
                gate.wait_ready(SESSIONS)
                gate.release()
                loop = _receive.batch_latencies if mode == "batch" else _receive.chunk_latencies
                return result(loop(sub, w.expected), w.expected)
            finally:
                publisher.close()

    return run


def systems(options: Options) -> list[tuple[str, Run]]:
    found: list[tuple[str, Run]] = [("agentplex", run_agentplex)]
    if options.peers and available("circusd"):
        found.append(("circus PUB stream", run_circus))
    if options.peers and available("supervisord"):
        found.append(("supervisord file (inotify)", run_supervisord))
    found += [
        ("bare pipeline, per line", bare_pipeline("line")),
        ("bare pipeline, batched", bare_pipeline("batch")),
    ]
    if hasattr(p, "ChunkBatch"):
        found.append(("bare pipeline, batched as agent.chunks", bare_pipeline("batchmsg")))
    return found


def measure(options: Options) -> Report:
    workload = Workload(0.5 if options.quick else 8.0)
    report = Report(
        f"Latency: child write → subscriber receive, {SESSIONS} sessions at "
        f"{TOTAL_RATE:,.0f} lines/s in total, {workload.expected:,} lines per run "
        f"({runs_text(options)}; each run's own percentiles)",
        ["system"],
        [
            Measure("p50 ms", "p50_ms", fixed(3)),
            Measure("p90 ms", "p90_ms", fixed(3)),
            Measure("p99 ms", "p99_ms", fixed(3)),
            Measure("max ms", "max_ms", fixed(2)),
            Measure("lost", "lost", fixed(0)),
        ],
    )
    run_in_turns(report, [], systems(options), workload, options.runs, "latency")
    report.notes += skipped_peers(options)
    return report


if __name__ == "__main__":
    sys.exit(main("Latency benchmark", measure))
