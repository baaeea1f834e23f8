"""Profile the daemon under the throughput workload with py-spy; where each chunk's time goes.

    python benchmarks/profile_daemon.py [--sessions 10] [--writer lines] [--lines 1000000]
                                        [--rate 250] [--out DIR]
    python benchmarks/profile_daemon.py --at-rest 500 [--seconds 20]

Starts an isolated daemon, N ``exec`` sessions writing 100-byte lines, one subscriber of
every chunk (as throughput.py), and ``py-spy record --nonblocking`` on the daemon from
the start gate to the last chunk. Prints the daemon's CPU per chunk and the functions
that take it (self and inclusive share of the samples, in µs per chunk); keeps the
collapsed stacks in DIR (``daemon.folded``, the input of any flame graph tool). With
``--at-rest N`` it profiles N idle sessions instead (what the daemon does when nothing
happens).
py-spy is in the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentplex import protocol as p

import _receive
from _harness import (
    CHILD,
    PYTHON,
    AgentplexDaemon,
    Control,
    Gate,
    cpu_seconds,
    log,
    start_exec,
    workdir,
)
from _peers import executable
from lifecycle import SLEEP
from throughput import zmq_context

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``func (path/to/agentplex/supervisor/chunks.py:97)`` -> ``chunks.py:func``."""
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{Path(match['file']).name}:{match['func']}"


def summarize(folded: Path, top: int) -> tuple[int, list[tuple[str, int, int]]]:
    """Total samples, and (function, self samples, inclusive samples) by self time."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    rows = [(name, own[name], inclusive[name]) for name, _ in own.most_common(top)]
    return total, rows


def record(args: argparse.Namespace, out: Path) -> tuple[int, float, float]:
    """Run the workload under py-spy; (chunks, seconds, daemon CPU seconds)."""
    spy = executable("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    per_child = args.lines // args.sessions
    with (
        workdir() as base,
        AgentplexDaemon(base) as daemon,
        Gate(base) as gate,
        zmq_context() as ctx,
    ):
        control = Control(ctx, daemon.control_endpoint)
        sub = daemon.subscribe(ctx, control, p.CHUNK_TOPIC)
        argv = [PYTHON, CHILD, args.writer, str(per_child), *gate.child_args()]
        control.call_many([start_exec(argv, base) for _ in range(args.sessions)])
        gate.wait_ready(args.sessions)
        recorder = py_spy(spy, daemon.pid, args.rate, out / "daemon.folded")
        cpu0 = cpu_seconds(daemon.pid)
        gate.release()
        got = _receive.chunks(sub, per_child * args.sessions)
        cpu = cpu_seconds(daemon.pid) - cpu0
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)
        control.close()
    return got.lines, got.seconds, cpu


def record_at_rest(args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """``--at-rest N``: N idle sessions, then py-spy for ``--seconds``; (seconds, CPU s)."""
    spy = executable("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    with workdir() as base, AgentplexDaemon(base) as daemon, zmq_context() as ctx:
        control = Control(ctx, daemon.control_endpoint)
        for first in range(0, args.at_rest, 50):
            size = min(50, args.at_rest - first)
            control.call_many([start_exec([SLEEP, "3600"], base) for _ in range(size)], 120)
        time.sleep(3.0)
        recorder = py_spy(spy, daemon.pid, args.rate, out / "daemon.folded")
        cpu0, t0 = cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(args.seconds)
        cpu, seconds = cpu_seconds(daemon.pid) - cpu0, time.perf_counter() - t0
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)
        control.close()
    return seconds, cpu


def py_spy(spy: str, pid: int, rate: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` (not pausing it), collapsed stacks to ``out``."""
    command = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--nonblocking",
        "--format",
        "raw",
        "-o",
        str(out),
    ]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the workload starts
    return recorder


def print_rows(total: int, rows: list[tuple[str, int, int]], scale: float, unit: str) -> None:
    """The functions by self time: share of samples, and that share of ``scale``."""
    print(f"| function | self % | self {unit} | inclusive % |")
    print("| --- | --- | --- | --- |")
    for name, own, incl in rows:
        share = own / total
        print(f"| `{name}` | {share:.1%} | {share * scale:.2f} | {incl / total:.1%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--writer", choices=["lines", "blocks"], default="lines")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("profile-out"))
    parser.add_argument("--at-rest", type=int, metavar="N", help="profile N idle sessions")
    parser.add_argument("--seconds", type=float, default=20.0, help="with --at-rest")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.at_rest:
        return main_at_rest(args)
    log(f"profiling: {args.sessions} sessions, {args.lines:,} lines, writer {args.writer}")
    chunks, seconds, cpu = record(args, args.out)
    total, rows = summarize(args.out / "daemon.folded", args.top)
    us_per_chunk = cpu / chunks * 1e6
    print(
        f"{chunks:,} chunks in {seconds:.2f} s = {chunks / seconds:,.0f} chunks/s; daemon CPU "
        f"{cpu:.2f} s = {us_per_chunk:.2f} µs per chunk; {total:,} samples\n"
    )
    print_rows(total, rows, us_per_chunk, "µs/chunk")
    print(f"\ncollapsed stacks: {args.out / 'daemon.folded'}")
    return 0


def main_at_rest(args: argparse.Namespace) -> int:
    log(f"profiling {args.at_rest} idle sessions for {args.seconds:g} s")
    seconds, cpu = record_at_rest(args, args.out)
    total, rows = summarize(args.out / "daemon.folded", args.top)
    print(
        f"{args.at_rest} idle sessions: daemon CPU {cpu / seconds:.2%} of one core over "
        f"{seconds:.1f} s; {total:,} samples\n"
    )
    print_rows(total, rows, cpu / seconds * 1e3, "ms CPU per s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
