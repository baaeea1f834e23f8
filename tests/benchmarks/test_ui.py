"""The dashboard benchmark still runs: ``benchmarks/ui.py --quick``, one run, in Debian's
Chromium. No timing is asserted (a shared CI machine); it must print the machine, a row per
measure with a figure in it, and a verdict per target, and leave no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import leftovers

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ROWS = [
    "chunk → DOM p50",
    "chunk → DOM p99",
    "chunk → DOM max",
    "20 sessions: navigation → every row",
    "longest task while loading them",
    "longest task while they stream",
    "open a 10,000-chunk session: click → tail",
]


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (.ci/run installs it)")
@pytest.mark.timeout(400)
def test_the_ui_benchmark_runs_and_prints_every_measure_and_verdict(short_tmp: Path) -> None:
    pytest.importorskip("playwright", reason="playwright is missing: pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ui.py"), "--quick"],
        cwd=ROOT,
        env=dict(os.environ, TMPDIR=str(short_tmp)),
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: ")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for name in ROWS:
        [row] = [r for r in rows if r.startswith(f"| {name}")]
        assert "\u2013" not in row.split("|")[-2], row  # a figure, not an empty cell
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 5, verdicts
    assert all(re.search(r"\*\*(met|NOT met)\*\*$", line) for line in verdicts), verdicts
    assert leftovers(short_tmp) == []
