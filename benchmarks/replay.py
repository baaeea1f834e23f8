"""Replay: ``follow`` a finished session of 1,000,000 chunks from seq 0; chunks/s.

    python benchmarks/replay.py [--quick] [--runs 5] [--json]

One ``exec`` session writes the chunks (64 KiB blocks of 100-byte lines) and ends; then
``AsyncClient.follow(session, 0)`` (the library's own follower: subscribe, replay pages
from the daemon, merge) is timed from the call to its last chunk, once per run, against
the same daemon. The first run reads the transcript cold from the page cache's point of
view only if the kernel dropped it; all runs read it through the daemon's sparse index.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio

from agentplex import protocol as p
from agentplex.client import AsyncClient

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
    log,
    main,
    runs_text,
    start_exec,
    wait_until,
    workdir,
)
from throughput import zmq_context


def write_session(daemon: AgentplexDaemon, control: Control, base: Path, count: int) -> str:
    """Start a session that writes ``count`` lines and wait until it has ended."""
    with Gate(base) as gate:
        argv = [PYTHON, CHILD, "blocks", str(count), *gate.child_args()]
        reply = control.call(start_exec(argv, base))
        assert isinstance(reply, p.Started)
        gate.wait_ready(1)
    sid: str = reply.session.id

    def ended() -> bool:
        info = control.call(p.Inspect(session=sid))
        assert isinstance(info, p.Described)
        return bool(info.session.status.ended)

    wait_until(ended, 600, 0.2, "the session to end")
    return sid


async def follow_all(runtime_dir: Path, sid: str) -> tuple[int, float]:
    async with AsyncClient(runtime_dir, timeout=60) as client:
        t0 = time.perf_counter()
        count = 0
        async for _chunk in client.follow(sid, 0):
            count += 1
        return count, time.perf_counter() - t0


def measure(options: Options) -> Report:
    count = 20_000 if options.quick else 1_000_000
    report = Report(
        f"Replay: `follow` from seq 0 of a finished session of {count:,} chunks "
        f"({runs_text(options)})",
        ["system"],
        [
            Measure("chunks/s", "chunks_per_s"),
            Measure("seconds", "seconds", fixed(2)),
            Measure("missing", "missing", fixed(0)),
        ],
    )
    runs: list[dict[str, Any]] = []
    with workdir() as base, AgentplexDaemon(base) as daemon, zmq_context() as ctx:
        control = Control(ctx, daemon.control_endpoint)
        log(f"replay: writing a session of {count:,} chunks")
        t0 = time.perf_counter()
        sid = write_session(daemon, control, base, count)
        report.notes.append(f"Writing the session took {time.perf_counter() - t0:.1f} s.")
        for i in range(options.runs):
            log(f"replay follow run {i + 1}/{options.runs}")
            got, seconds = anyio.run(follow_all, daemon.runtime_dir, sid)
            runs.append({"chunks_per_s": got / seconds, "seconds": seconds, "missing": count - got})
        control.close()
    report.add(["agentplex"], runs)
    return report


if __name__ == "__main__":
    sys.exit(main("Replay benchmark", measure))
