"""ProcessScanner: terminates that need a /proc scan at the same moment share one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from agentplex.supervisor.scanner import ProcessScan, ProcessScanner


@contextmanager
def sleeping(**popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"], **popen)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def ask_together(scanner: ProcessScanner, count: int) -> list[ProcessScan]:
    scans: list[ProcessScan] = []

    async def ask() -> None:
        scans.append(await scanner.scan())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(ask)
    return scans


def test_scans_asked_for_together_are_one_read_and_a_later_ask_reads_afresh() -> None:
    scanner = ProcessScanner()
    with sleeping() as first:
        together = anyio.run(ask_together, scanner, 3)
        assert together[0] is together[1] is together[2]
        assert first.pid in together[0].stats
        with sleeping() as second:
            later = anyio.run(scanner.scan)
            assert later is not together[0]
            assert {first.pid, second.pid} <= later.stats.keys()


def test_a_scan_finds_a_group_and_the_strays_carrying_the_session_marker() -> None:
    marker = {"AGENTPLEX_SESSION_ID": "s-1", "PATH": "/usr/bin:/bin"}
    with (
        sleeping(start_new_session=True) as grouped,
        sleeping(start_new_session=True, env=marker) as stray,
        sleeping(start_new_session=True, env=marker) as in_other_group,
    ):
        scan = anyio.run(ProcessScanner().scan)
        found = scan.session_processes("s-1", grouped.pid, other_groups={in_other_group.pid})
        assert sorted(found) == sorted([grouped.pid, stray.pid])
