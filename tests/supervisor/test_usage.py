"""Token and cost figures from agents are checked before the daemon counts or sends them,
and running totals (of a process, of a CLI's thread) count each turn once."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.supervisor.usage import MAX_COST_USD, MAX_COUNT, UsageMeter, add, checked

# A stand-in for `claude -p`: one process reports three results with absurd running figures
# (Claude Code's `modelUsage` and `total_cost_usd` are the process's running totals).
FAKE_CLAUDE = """\
import json, sys
def result(text, cost, **tokens):
    print(json.dumps({"type": "result", "subtype": "success", "result": text,
                      "session_id": "fake-session", "total_cost_usd": cost,
                      "modelUsage": {"m": tokens}}), flush=True)
result("first", 1e308, inputTokens=5, outputTokens=-3)
result("second", 1e308, inputTokens=2**70, outputTokens=7)
result("third", 0.25, inputTokens=6, outputTokens=8)
"""


@pytest.fixture
def claude_daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    script = short_tmp / "claude"
    script.write_text(f"#!{sys.executable}\n{FAKE_CLAUDE}")
    script.chmod(0o755)
    d = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_CLAUDE_CLI": str(script)})
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log_lines[-5:]


def test_absurd_usage_from_an_agent_is_dropped_and_every_client_still_decodes(
    claude_daemon: DaemonProcess,
) -> None:
    with claude_daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as chunks:
        info = client.start("claude", prompt="go")
        next_event(chunks, is_chunk(info.id, p.ChunkKind.RESULT, "third"), timeout=60)
        usage = client.inspect(info.id).usage
        listed = client.list().sessions  # failed to decode: "Expected float, got null"
        replayed = client.replay(info.id)
    assert [s.id for s in listed] == [info.id]
    assert usage == p.Usage(input_tokens=6, output_tokens=8, cost_usd=0.25)
    results = [c for c in _chunks(replayed) if c.kind is p.ChunkKind.RESULT]
    assert [c.usage for c in results] == [
        p.Usage(input_tokens=5),
        p.Usage(output_tokens=7),
        p.Usage(input_tokens=1, output_tokens=1, cost_usd=0.25),
    ]
    ls = claude_daemon.cli("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert json.loads(ls.stdout)
    dropped = [r for r in claude_daemon.log_lines if r.get("event") == "usage_figures_dropped"]
    assert len(dropped) == 2
    assert dropped[0]["cost_usd"] == "1e+308"
    assert dropped[0]["output_tokens"] == "-3"


def _chunks(replayed: object) -> list[p.Chunk]:
    assert isinstance(replayed, p.Replayed)
    found: list[p.Chunk] = []
    for raw in replayed.chunks:
        found.extend(p.expand(p.chunk_decoder.decode(raw)))
    return found


@pytest.mark.parametrize(
    ("figures", "kept"),
    [
        ({"cost_usd": math.inf}, p.Usage()),
        ({"cost_usd": math.nan}, p.Usage()),
        ({"cost_usd": -0.5}, p.Usage()),
        ({"cost_usd": 1e13}, p.Usage()),
        ({"cost_usd": 2}, p.Usage(cost_usd=2.0)),
        ({"input_tokens": -1, "output_tokens": 4}, p.Usage(output_tokens=4)),
        ({"cached_tokens": 1.5}, p.Usage()),
        ({"cached_tokens": True}, p.Usage()),
        ({"output_tokens": MAX_COUNT + 1}, p.Usage()),
        ({"duration_ms": -2}, p.Usage()),
        ({"duration_ms": 12, "cost_usd": 0.5}, p.Usage(duration_ms=12, cost_usd=0.5)),
    ],
)
def test_a_figure_that_is_not_finite_non_negative_and_bounded_is_dropped(
    figures: dict[str, object], kept: p.Usage
) -> None:
    usage = p.Usage(**figures)  # type: ignore[arg-type]  # wrong types on purpose
    assert checked(usage, session_id="s", backend="b") == kept


def test_totals_saturate_at_their_bounds_instead_of_overflowing() -> None:
    big = p.Usage(input_tokens=MAX_COUNT, cost_usd=MAX_COST_USD)
    total = add(add(p.Usage(), big), big)
    assert total == big
    assert math.isfinite(total.cost_usd)


# --------------------------------------------------------------------------- running totals


def running(**figures: float) -> p.Usage:
    return p.Usage(scope=p.UsageScope.PROCESS, **figures)  # type: ignore[arg-type]


def test_a_process_running_total_counts_only_what_each_turn_added() -> None:
    meter = UsageMeter()
    turns = [
        meter.turn_figures(running(input_tokens=100, cost_usd=0.0126), None),
        meter.turn_figures(running(input_tokens=250, cost_usd=0.0252), None),
        meter.turn_figures(running(input_tokens=250, cost_usd=0.0378), None),
    ]
    for turn in turns:
        meter.count(turn)
    assert turns == [
        p.Usage(input_tokens=100, cost_usd=0.0126),
        p.Usage(input_tokens=150, cost_usd=0.0126),
        p.Usage(cost_usd=0.0126),
    ]
    assert all(t.scope is p.UsageScope.TURN for t in turns)
    assert meter.total == p.Usage(input_tokens=250, cost_usd=0.0378)


def test_a_new_process_counts_from_zero_and_turn_figures_pass_through() -> None:
    meter = UsageMeter()
    meter.turn_figures(running(output_tokens=40), None)
    meter.new_process()
    assert meter.turn_figures(running(output_tokens=30), None) == p.Usage(output_tokens=30)
    assert meter.turn_figures(p.Usage(output_tokens=5), None) == p.Usage(output_tokens=5)


def test_a_thread_total_counts_from_the_threads_last_figure_across_processes() -> None:
    meter, thread = UsageMeter(), p.UsageScope.THREAD
    first = meter.turn_figures(p.Usage(input_tokens=6900, scope=thread), "t-1")
    meter.new_process()  # the next turn is a new process resuming the thread
    second = meter.turn_figures(p.Usage(input_tokens=13900, scope=thread), "t-1")
    other = meter.turn_figures(p.Usage(input_tokens=500, scope=thread), "t-2")
    assert [first.input_tokens, second.input_tokens, other.input_tokens] == [6900, 7000, 500]
    assert meter.thread is not None and meter.thread.thread_id == "t-2"


def test_a_running_figure_below_its_base_adds_nothing_and_lowers_nothing() -> None:
    meter = UsageMeter()
    meter.turn_figures(running(input_tokens=100, cost_usd=0.5), None)
    assert meter.turn_figures(running(cost_usd=0.5), None) == p.Usage()  # tokens left out
    assert meter.turn_figures(running(input_tokens=120, cost_usd=0.75), None) == p.Usage(
        input_tokens=20, cost_usd=0.25
    )


# A stand-in for `codex exec [resume ID]`: like Codex, each turn reports the thread's running
# tokens, here 100 more input tokens per turn (the turn count is kept beside the script).
FAKE_CODEX = """\
import json, pathlib
state = pathlib.Path(__file__).with_name("codex-turns")
turns = int(state.read_text()) + 1 if state.exists() else 1
state.write_text(str(turns))
for line in ({"type": "thread.started", "thread_id": "thread-1"},
             {"type": "turn.started"},
             {"type": "turn.completed", "usage": {"input_tokens": 100 * turns}}):
    print(json.dumps(line), flush=True)
"""


def test_a_threads_last_running_figure_survives_a_daemon_restart(short_tmp: Path) -> None:
    script = short_tmp / "codex"
    script.write_text(f"#!{sys.executable}\n{FAKE_CODEX}")
    script.chmod(0o755)
    env = {"AGENTPLEX_CODEX_CLI": str(script)}
    first = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        with first.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
            info = client.start("codex", prompt="one", permission_policy="deny")
            next_event(events, _became_idle(info.id), timeout=60)
        _wait_saved(short_tmp / "state" / "sessions.jsonl", '"thread_usage"')
    finally:
        first.process.send_signal(signal.SIGKILL)  # a crash: the session is taken back
        first.process.wait(timeout=10)
    second = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        with second.client() as client, client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
            client.send("two", info.id)
            result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), timeout=60)
            next_event(events, _became_idle(info.id), timeout=60)
            total = client.inspect(info.id).usage
    finally:
        assert second.stop() == 0, second.log_lines[-5:]
    assert isinstance(result, p.Chunk) and result.usage is not None
    assert result.usage.input_tokens == 100, "the turn added 100 to the thread's running 200"
    assert total == p.Usage(input_tokens=200), "the thread's 200 counted once, not 100 + 200"


def _became_idle(session_id: str) -> Callable[[p.Event], bool]:
    def match(event: p.Event) -> bool:
        return (
            isinstance(event, p.StatusChanged)
            and event.session_id == session_id
            and event.status is p.SessionStatus.IDLE
        )

    return match


def _wait_saved(table: Path, needle: str, timeout: float = 30) -> None:
    """Wait until the session table on disk holds ``needle``."""
    deadline = time.monotonic() + timeout
    while needle not in (table.read_text() if table.exists() else ""):
        assert time.monotonic() < deadline, f"{needle} never reached {table}"
        time.sleep(0.02)
