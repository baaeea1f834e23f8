"""Panels: the analytics of a 10,000-message panel (target ≤ 200 ms; the design seed asks 5 s).

    python benchmarks/panels.py [--quick] [--runs 5] [--json]

A synthetic panel is built once, in memory, with a fixed seed: 6 members taking turns over
rounds, each reply answering one of the last few messages, some naming another member,
agents' replies carrying usage and a latency, a few reactions, orchestrator (SYSTEM)
messages, a captured insight every 20 messages and a voted decision every 200. Then, per
run: ``compute`` over the whole log (what ``panel report`` and the end of a panel do); the
``LiveAnalytics`` path (every record ``update``d, then one ``snapshot``); the snapshot
alone (what a live view asks for); encoding ``final_analytics.json``; and the Markdown
report (its discussion bounded to the last 200 messages).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from agentplex.protocol.panels import (
    ConsensusLevel,
    Decision,
    Insight,
    InsightKind,
    MemberInfo,
    MemberSpec,
    MessageType,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    PanelStatus,
    Position,
    Reaction,
    Vote,
)
from agentplex.protocol.values import Usage
from agentplex.supervisor.panels.analytics import LiveAnalytics, compute, encode
from agentplex.supervisor.panels.report import markdown

from _harness import Measure, Options, Report, fixed, log, main, runs_text

MEMBERS = ["PM", "QA", "Specialist", "Architect", "Security", "Ann"]
"""Five agents and a human."""
WORDS = [
    "the", "cache", "should", "ship", "after", "load", "tests", "because",
    "latency", "matters", "more", "than", "scope",
]  # fmt: skip
TARGET_MS = 200.0
T0 = 1_700_000_000.0


class Panel:
    """A synthetic panel's logs."""

    def __init__(self, count: int, seed: int = 14) -> None:
        rng = random.Random(seed)
        self.messages = [self._message(rng, n) for n in range(count)]
        self.insights = [
            Insight(
                id=f"m{n}-i0",
                panel_id="bench",
                kind=rng.choice(list(InsightKind)),
                text=" ".join(rng.choices(WORDS, k=8)),
                participant=MEMBERS[n % 5],
                message_id=f"m{n}",
                ts=T0 + n,
            )
            for n in range(0, count, 20)
        ]
        self.decisions = [self._decision(rng, n) for n in range(0, count, 200)]

    @staticmethod
    def _message(rng: random.Random, n: int) -> PanelMessage:
        if n % 100 == 99:
            return PanelMessage(
                id=f"m{n}",
                panel_id="bench",
                participant="system",
                text="round ends",
                ts=T0 + n,
                turn=n,
                round=n // 6,
                type=MessageType.SYSTEM,
            )
        who = MEMBERS[n % len(MEMBERS)]
        agent = who != "Ann"
        named = rng.choice(MEMBERS) if rng.random() < 0.3 else None
        text = " ".join(rng.choices(WORDS, k=rng.randint(20, 120)))
        return PanelMessage(
            id=f"m{n}",
            panel_id="bench",
            participant=who,
            text=f"@{named} {text}" if named else text,
            ts=T0 + n,
            turn=n,
            round=n // 6,
            reply_to=f"m{n - rng.randint(1, 5)}" if n > 5 and rng.random() < 0.6 else None,
            thread_id=f"t{n // 50}",
            mentions=[named] if named else [],
            reactions=[Reaction(participant="Ann", emoji="👍", ts=T0 + n)]
            if rng.random() < 0.05
            else [],
            usage=Usage(
                input_tokens=rng.randint(500, 5000),
                output_tokens=rng.randint(50, 800),
                cost_usd=rng.random() / 100,
            )
            if agent
            else None,
            latency_ms=rng.randint(300, 20_000) if agent else None,
        )

    @staticmethod
    def _decision(rng: random.Random, n: int) -> Decision:
        votes = [
            Vote(participant=name, position=rng.choice(list(Position)), reason="because")
            for name in MEMBERS[:5]
        ]
        return Decision(
            id=f"d{n}",
            panel_id="bench",
            proposal=f"proposal {n}",
            votes=votes,
            level=rng.choice(list(ConsensusLevel)),
            agreement=0.6,
            ts=T0 + n,
        )

    def info(self) -> PanelInfo:
        specs = [MemberSpec(name=name) for name in MEMBERS]
        return PanelInfo(
            id="bench",
            config=PanelConfig(topic="Ship the cache?", members=specs),
            status=PanelStatus.COMPLETED,
            created_at=T0,
            members=[MemberInfo(spec=spec) for spec in specs],
        )


def timed(step: Callable[[], Any]) -> float:
    """Milliseconds one call of ``step`` takes."""
    t0 = time.perf_counter()
    step()
    return (time.perf_counter() - t0) * 1000


def live(panel: Panel) -> LiveAnalytics:
    analytics = LiveAnalytics(MEMBERS)
    for message in panel.messages:
        analytics.update(message)
    for insight in panel.insights:
        analytics.add_insight(insight)
    for decision in panel.decisions:
        analytics.add_decision(decision)
    return analytics


def one_run(panel: Panel) -> dict[str, dict[str, float]]:
    count = len(panel.messages)
    full = compute(panel.messages, panel.decisions, panel.insights, MEMBERS)
    kept = live(panel)
    assert kept.snapshot() == full, "live analytics differ from compute"
    steps: dict[str, Callable[[], Any]] = {
        "compute": lambda: compute(panel.messages, panel.decisions, panel.insights, MEMBERS),
        "live: update all + snapshot": lambda: live(panel).snapshot(),
        "live: snapshot": kept.snapshot,
        "final_analytics.json": lambda: encode(full),
        "report (Markdown)": lambda: markdown(
            panel.info(), full, panel.messages, panel.decisions, panel.insights
        ),
    }
    results = {}
    for name, step in steps.items():
        ms = timed(step)
        results[name] = {"ms": ms, "us_per_message": ms * 1000 / count}
    return results


def measure(options: Options) -> Report:
    count = 1_000 if options.quick else 10_000
    report = Report(
        f"Panels: analytics of a {count:,}-message panel, 6 members ({runs_text(options)})",
        ["system", "step"],
        [Measure("ms", "ms", fixed(1)), Measure("µs per message", "us_per_message", fixed(2))],
    )
    log(f"panels: building a synthetic panel of {count:,} messages")
    panel = Panel(count)
    runs: dict[str, list[dict[str, float]]] = {}
    for i in range(options.runs):
        log(f"panels analytics run {i + 1}/{options.runs}")
        for name, figures in one_run(panel).items():
            runs.setdefault(name, []).append(figures)
    for name, step_runs in runs.items():
        report.add(["agentplex", name], step_runs)
    median = statistics.median(r["ms"] for r in runs["compute"])
    verdict = "within" if median <= TARGET_MS else "OVER"
    report.notes.append(
        f"Target: `compute` of 10,000 messages ≤ {TARGET_MS:.0f} ms; this run's median "
        f"{median:.1f} ms for {count:,} is {verdict} it. Live figures equal `compute`'s "
        "(checked every run)."
    )
    return report


if __name__ == "__main__":
    sys.exit(main("Panels benchmark", measure))
