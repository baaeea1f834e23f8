"""The benchmarks still run: each script at its tiny ``--quick`` size, one run.

No timing is asserted (CI machines are shared and noisy); a benchmark passes when it
exits 0, prints its table with a row per system it measured, and leaves no process of
its own behind. circus and supervisord rows are expected only where the ``bench`` extra
is installed (``pip install -e '.[bench]'``); without it the scripts skip them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import leftovers

ROOT = Path(__file__).resolve().parent.parent.parent
BENCHMARKS = ROOT / "benchmarks"
BIN = Path(sys.executable).parent


def installed(executable: str) -> bool:
    return (BIN / executable).exists() or shutil.which(executable) is not None


PEERS = installed("circusd") and installed("supervisord")

SCRIPTS = {
    "throughput.py": ["agentplex", "bare pipe reader", "bare pipeline, batched", "bare PUB→SUB"],
    "latency.py": ["agentplex", "bare pipeline, per line"],
    "lifecycle.py": ["agentplex"],
    "scale.py": ["agentplex"],
    "replay.py": ["agentplex"],
    "panels.py": ["agentplex"],
}
PEER_ROWS = {
    "throughput.py": ["circus PUB stream", "circus file", "supervisord file"],
    "latency.py": ["circus PUB stream", "supervisord file"],
    "lifecycle.py": ["circus", "supervisord"],
}


def run(script: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark with its temp dirs under ``tmp`` (to find anything it leaves)."""
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


def table_rows(output: str) -> list[str]:
    """The first cell of each data row of the printed tables."""
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("system", "---"):
            rows.append(cells[0])
    return rows


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_benchmark_runs_and_prints_its_table(script: str, short_tmp: Path) -> None:
    done = run(script, short_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: ")
    rows = table_rows(done.stdout)
    expected = SCRIPTS[script] + (PEER_ROWS.get(script, []) if PEERS else [])
    for name in expected:
        assert any(row.startswith(name) for row in rows), (name, done.stdout)
    assert leftovers(short_tmp) == []


def test_run_all_prints_one_report_with_every_table(short_tmp: Path) -> None:
    done = run("run_all.py", short_tmp, "--no-peers")
    assert done.returncode == 0, done.stderr[-3000:]
    titles = [line for line in done.stdout.splitlines() if line.startswith("### ")]
    assert [title.split(":")[0] for title in titles] == [
        "### Throughput",
        "### Latency",
        "### Lifecycle",
        "### Scale",
        "### Replay",
    ]
    assert leftovers(short_tmp) == []


def test_panels_prints_the_overhead_and_the_analytics_tables(short_tmp: Path) -> None:
    done = run("panels.py", short_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    titles = [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("### ")]
    assert titles == ["### Panels", "### Panels"]
    assert "orchestrator overhead" in done.stdout and "analytics of a" in done.stdout
    rows = table_rows(done.stdout)
    assert any(row == "agentplex" for row in rows)
    assert "| \u2013 |" not in done.stdout  # no empty cell: every handover was found
    assert leftovers(short_tmp) == []
