"""The workload child every supervisor runs: the same program for agentplex and its peers.

Standard library only (it starts once per session). Every mode first waits at the start
gate: it marks itself ready, then blocks on a shared lock the benchmark holds until all
children are up, so every system is timed from the same start and spawning is not in it.

    _child.py lines  COUNT GATE READY_DIR   COUNT 100-byte lines, one write(2) each
    _child.py blocks COUNT GATE READY_DIR   the same lines in 64 KiB writes (655 lines)
    _child.py stamped RATE SECONDS SLOT SLOTS GATE READY_DIR
        100-byte lines at RATE lines/s for SECONDS, each starting with the CLOCK_MONOTONIC
        time (ns) of its write; SLOT (mod SLOTS) staggers the children's schedules evenly
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

LINE_BYTES = 100
LINES_PER_BLOCK = (64 * 1024) // LINE_BYTES


def wait_at_gate(gate: str, ready_dir: str) -> None:
    """Say ready, then block until the benchmark releases its exclusive lock on ``gate``."""
    fd = os.open(gate, os.O_RDONLY)
    open(os.path.join(ready_dir, str(os.getpid())), "w").close()
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.close(fd)


def line(n: int) -> bytes:
    """A 100-byte line (newline included) that says which line it is."""
    head = b"%d:%010d " % (os.getpid(), n)
    return head + b"x" * (LINE_BYTES - 1 - len(head)) + b"\n"


def write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def write_lines(count: int) -> None:
    payload = line(0)
    write = os.write
    for _ in range(count):
        write(1, payload)


def write_blocks(count: int) -> None:
    block = line(0) * LINES_PER_BLOCK
    full, rest = divmod(count, LINES_PER_BLOCK)
    for _ in range(full):
        write_all(block)
    write_all(line(0) * rest)


def write_stamped(rate: float, seconds: float, phase: float) -> None:
    """Lines on a fixed schedule; each carries the monotonic time of its own write."""
    period = 1.0 / rate
    start = time.monotonic() + phase
    for i in range(int(rate * seconds)):
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        head = b"%d " % time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        os.write(1, head + b"s" * (LINE_BYTES - 1 - len(head)) + b"\n")


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode in ("lines", "blocks"):
        count, gate, ready_dir = int(argv[1]), argv[2], argv[3]
        wait_at_gate(gate, ready_dir)
        (write_lines if mode == "lines" else write_blocks)(count)
    elif mode == "stamped":
        rate, seconds, slot, slots = float(argv[1]), float(argv[2]), int(argv[3]), int(argv[4])
        wait_at_gate(argv[5], argv[6])
        write_stamped(rate, seconds, (slot % slots) / (rate * slots))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
