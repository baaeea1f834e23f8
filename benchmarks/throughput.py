"""Throughput: N sessions each writing 100-byte lines as fast as they can, line by line
(one write(2) per line) and in 64 KiB blocks; lines/s and MB/s delivered to one
subscriber of everything, first to last line, with capture on; the supervisor's CPU %.

    python benchmarks/throughput.py [--quick] [--runs 5] [--json] [--no-peers]

Systems, each started afresh for every run in its own temp dir, with the same child
(``_child.py``) released by the same start gate:

- agentplex: ``exec`` sessions; transcripts on; one raw SUB to ``agent.chunk.``,
  every chunk decoded with the protocol's decoder, seq checked per session.
- circus PUB stream: circusd, one watcher of N processes, stdout to ``_circus_stream``
  (one PUB message per read circus makes, <= 1 KiB, unstructured); newlines counted.
- circus file / supervisord file: stdout captured to files (circus FileStream; supervisord
  ``stdout_logfile`` per process); "delivered" = bytes in the files, polled every 2 ms.
- raw limits (``_bare.py``): the bare pipe reader, the bare per-line and batched pipelines,
  and (one row) the same chunk messages through a bare PUB -> SUB.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import zmq

from agentplex import protocol as p

import _receive
from _bare import PipeReader, Publisher
from _harness import (
    CHILD,
    PYTHON,
    AgentplexDaemon,
    Control,
    Gate,
    Measure,
    Options,
    Report,
    cpu_seconds,
    fixed,
    log,
    main,
    run_in_turns,
    runs_text,
    start_exec,
    subscriber,
    workdir,
)
from _peers import Circus, Program, Supervisord, Watcher, available

LINE_BYTES = 100


@dataclass(frozen=True)
class Workload:
    sessions: int
    writer: str
    """``lines`` (one write per line) or ``blocks`` (64 KiB writes)."""
    per_child: int

    @property
    def expected(self) -> int:
        return self.sessions * self.per_child

    def argv(self, gate: Gate) -> list[str]:
        return [PYTHON, CHILD, self.writer, str(self.per_child), *gate.child_args()]


Run = Callable[[Workload], dict[str, Any]]


def result(got: _receive.Delivery, expected: int, cpu: float, sub_cpu: float) -> dict[str, Any]:
    rate = got.rate()
    return {
        "lines_per_s": rate,
        "mb_per_s": rate * LINE_BYTES / 1e6 if rate is not None else None,
        "cpu_pct": cpu,
        "subscriber_cpu_pct": sub_cpu,
        "seconds": got.seconds,
        "delivered": got.lines,
        "lost": expected - got.lines,
        "seq_gaps": got.gaps,
    }


def timed(
    pid: int, gate: Gate | None, receive: Callable[[], _receive.Delivery], expected: int
) -> dict[str, Any]:
    """Release the children and receive; the supervisor's and the subscriber's CPU % over
    that window (the subscriber is this process)."""
    me = os.getpid()
    cpu0, sub0, t0 = cpu_seconds(pid), cpu_seconds(me), time.perf_counter()
    if gate is not None:
        gate.release()
    got = receive()
    wall = time.perf_counter() - t0
    cpu, sub_cpu = cpu_seconds(pid) - cpu0, cpu_seconds(me) - sub0
    return result(got, expected, cpu / wall * 100, sub_cpu / wall * 100)


@contextlib.contextmanager
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


# --------------------------------------------------------------------------- systems


def run_agentplex(w: Workload) -> dict[str, Any]:
    with (
        workdir() as base,
        AgentplexDaemon(base) as daemon,
        Gate(base) as gate,
        zmq_context() as ctx,
    ):
        control = Control(ctx, daemon.control_endpoint)
        sub = daemon.subscribe(ctx, control, p.CHUNK_TOPIC)
        control.call_many([start_exec(w.argv(gate), base) for _ in range(w.sessions)])
        gate.wait_ready(w.sessions)
        return timed(daemon.pid, gate, lambda: _receive.chunks(sub, w.expected), w.expected)


def run_circus_pub(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate, zmq_context() as ctx:
        endpoint = f"ipc://{base / 'lines.sock'}"
        argv = w.argv(gate)
        watcher = Watcher("w", argv[0], argv[1:], w.sessions, ("pub", endpoint))
        with Circus(base, [watcher]) as circus:
            sub = subscriber(ctx, endpoint, handshake=True)
            gate.wait_ready(w.sessions)
            return timed(circus.pid, gate, lambda: _receive.blobs(sub, w.expected), w.expected)


def run_circus_file(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate:
        out = base / "w.log"
        argv = w.argv(gate)
        watcher = Watcher("w", argv[0], argv[1:], w.sessions, ("file", str(out)))
        with Circus(base, [watcher]) as circus:
            gate.wait_ready(w.sessions)
            watch = lambda: _receive.files(lambda: [out], w.expected * LINE_BYTES, LINE_BYTES)  # noqa: E731
            return timed(circus.pid, gate, watch, w.expected)


def run_supervisord(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate:
        program = Program("w", " ".join(w.argv(gate)), w.sessions)
        paths = [program.log_path(base, i) for i in range(w.sessions)]
        with Supervisord(base, [program]) as supervisord:
            gate.wait_ready(w.sessions)
            watch = lambda: _receive.files(lambda: paths, w.expected * LINE_BYTES, LINE_BYTES)  # noqa: E731
            return timed(supervisord.pid, gate, watch, w.expected)


def run_bare_pipe(w: Workload) -> dict[str, Any]:
    with workdir() as base, Gate(base) as gate:
        reader = PipeReader([w.argv(gate)] * w.sessions)
        try:
            gate.wait_ready(w.sessions)
            got = _receive.Delivery()

            def receive() -> _receive.Delivery:
                got.first, got.last, got.lines = reader.read(w.expected)
                return got

            return timed(os.getpid(), gate, receive, w.expected)
        finally:
            reader.close()


def bare_pipeline(mode: str) -> Run:
    def run(w: Workload) -> dict[str, Any]:
        with workdir() as base, Gate(base) as gate, zmq_context() as ctx:
            endpoint = f"ipc://{base / 'bare.sock'}"
            (base / "out").mkdir()
            argvs = json.dumps([w.argv(gate)] * w.sessions)
            publisher = Publisher([mode, endpoint, str(base / "out"), argvs], base)
            try:
                sub = subscriber(ctx, endpoint)
                publisher.wait_ready()
                gate.wait_ready(w.sessions)
                loop = _receive.batches if mode == "batch" else _receive.chunks
                return timed(publisher.pid, gate, lambda: loop(sub, w.expected), w.expected)
            finally:
                publisher.close()

    return run


def run_bare_zmq(count: int) -> dict[str, Any]:
    with workdir() as base, zmq_context() as ctx:
        endpoint = f"ipc://{base / 'bare.sock'}"
        publisher = Publisher(["zmq", endpoint, str(count)], base)
        try:
            sub = subscriber(ctx, endpoint)
            publisher.wait_ready()
            return timed(publisher.pid, None, lambda: _receive.chunks(sub, count), count)
        finally:
            publisher.close()


def systems(options: Options) -> list[tuple[str, Run]]:
    found: list[tuple[str, Run]] = [("agentplex", run_agentplex)]
    if options.peers and available("circusd"):
        found += [("circus PUB stream", run_circus_pub), ("circus file", run_circus_file)]
    if options.peers and available("supervisord"):
        found.append(("supervisord file", run_supervisord))
    found += [
        ("bare pipe reader", run_bare_pipe),
        ("bare pipeline, per line", bare_pipeline("line")),
        ("bare pipeline, batched", bare_pipeline("batch")),
    ]
    if hasattr(p, "ChunkBatch"):
        found.append(("bare pipeline, batched as agent.chunks", bare_pipeline("batchmsg")))
    return found


# --------------------------------------------------------------------------- the report


def measure(options: Options) -> Report:
    counts = (2,) if options.quick else (1, 10, 50)
    total = 2_000 if options.quick else 400_000
    report = Report(
        f"Throughput: 100-byte lines to one subscriber ({total:,} lines per run, "
        f"{runs_text(options)})",
        ["system", "N", "writer"],
        [
            Measure("lines/s", "lines_per_s"),
            Measure("MB/s", "mb_per_s", fixed(1)),
            Measure("supervisor CPU %", "cpu_pct", fixed(0)),
            Measure("subscriber CPU %", "subscriber_cpu_pct", fixed(0)),
            Measure("lost", "lost", fixed(0)),
        ],
    )
    chosen = systems(options)
    for n in counts:
        for writer in ("lines", "blocks"):
            workload = Workload(n, writer, total // n)
            what = f"throughput N={n} {writer}"
            run_in_turns(report, [str(n), writer], chosen, workload, options.runs, what)
    zmq_runs = []
    for i in range(options.runs):
        log(f"throughput bare PUB->SUB run {i + 1}/{options.runs}")
        zmq_runs.append(run_bare_zmq(total))
    report.add(["bare PUB→SUB, 1 chunk per message", "–", "–"], zmq_runs)
    report.notes += skipped_peers(options)
    return report


def skipped_peers(options: Options) -> list[str]:
    if not options.peers:
        return ["Peers skipped (--no-peers)."]
    missing = [name for name in ("circusd", "supervisord") if not available(name)]
    if missing:
        return [f"Not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')."]
    return []


if __name__ == "__main__":
    sys.exit(main("Throughput benchmark", measure))
