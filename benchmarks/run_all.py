"""Every benchmark in one run, one combined report with the machine description.

    python benchmarks/run_all.py [--quick] [--runs 5] [--json] [--no-peers] [--save FILE]

Order: throughput, latency, lifecycle, scale, replay. The load average is noted before
and after (other processes on the machine skew every figure; ratios within one run
are what to compare).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import latency
import lifecycle
import replay
import scale
import throughput
from _harness import describe_machine, log, machine, parse_options

BENCHMARKS = (throughput, latency, lifecycle, scale, replay)


def main() -> int:
    options = parse_options("Every agentplex benchmark, one report")
    before = machine()
    t0 = time.perf_counter()
    reports = []
    for module in BENCHMARKS:
        log(f"== {module.__name__}")
        reports.append(module.measure(options))
    after = machine()
    minutes = (time.perf_counter() - t0) / 60
    doc = {
        "machine": before,
        "load_average_after": after["load_average"],
        "minutes": minutes,
        "reports": [report.as_json() for report in reports],
    }
    if options.save:
        Path(options.save).write_text(json.dumps(doc, indent=2))
    if options.json:
        print(json.dumps(doc, indent=2))
        return 0
    load = " ".join(str(x) for x in after["load_average"])
    print(f"machine: {describe_machine(before)}; after: load average {load}; {minutes:.1f} min\n")
    for report in reports:
        print(report.render(), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
