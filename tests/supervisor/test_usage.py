"""Token and cost figures from agents are checked before the daemon counts or sends them."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.supervisor.usage import MAX_COST_USD, MAX_COUNT, add, checked

# A stand-in for `claude -p`: every turn reports two results with absurd figures.
FAKE_CLAUDE = """\
import json, sys
def result(text, **fields):
    print(json.dumps({"type": "result", "subtype": "success", "result": text,
                      "session_id": "fake-session", **fields}), flush=True)
result("first", total_cost_usd=1e308, duration_ms=1e300,
       usage={"input_tokens": 5, "output_tokens": -3})
result("second", total_cost_usd=1e308, usage={"input_tokens": 2**70, "output_tokens": 7})
result("third", total_cost_usd=0.25, usage={"input_tokens": 1, "output_tokens": 1})
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
