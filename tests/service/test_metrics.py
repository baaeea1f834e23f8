"""The Prometheus endpoint: scraped while sessions run, parsed by prometheus_client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import DaemonProcess, session_info, start_daemon

from agentplex import protocol as p
from agentplex.supervisor.metrics import CONTENT_TYPE, Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by name and labels, through the reference parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def scrape(port: int, path: str = "/metrics") -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode(), response.headers["Content-Type"]


@pytest.fixture
def metrics_daemon(short_tmp: Path) -> Iterator[tuple[DaemonProcess, int]]:
    d = start_daemon(short_tmp, "--grace", "2", "--metrics-port", "0")
    try:
        url = next(str(r["url"]) for r in d.log_lines if r.get("event") == "metrics_listening")
        yield d, int(url.rsplit(":", 1)[1].split("/")[0])
    finally:
        assert d.stop() == 0


def test_a_scrape_counts_the_sessions_that_were_started(
    metrics_daemon: tuple[DaemonProcess, int],
) -> None:
    daemon, port = metrics_daemon
    with daemon.client() as client:
        running = [client.start("exec", argv=["cat"], tag=f"m{i}") for i in range(3)]
        ended = client.start("exec", argv=["cat"], tag="gone")
        client.terminate(ended.id)
        text, content_type = scrape(port)
    assert content_type == CONTENT_TYPE
    samples = parse(text)
    assert value(samples, "agentplex_sessions", backend="exec", status="running") == 3
    assert value(samples, "agentplex_sessions", backend="exec", status="terminated") == 1
    for info in running:
        labels = {"backend": "exec", "session_id": info.id, "tag": info.tag or ""}
        assert value(samples, "agentplex_session_rss_bytes", **labels) > 0
        assert value(samples, "agentplex_session_processes", **labels) == 1
        assert value(samples, "agentplex_session_cpu_percent", **labels) >= 0
    live_ids = {dict(labels).get("session_id") for name, labels in samples if "session_" in name}
    assert ended.id not in live_ids  # per-session gauges are for live sessions only
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    for backend in ("exec", "demo", "claude"):  # counters exist from the start, fed by hooks
        assert value(samples, "agentplex_chunks_total", backend=backend) >= 0
        assert value(samples, "agentplex_spawn_seconds_count", backend=backend) >= 0
        assert value(samples, "agentplex_tokens_total", backend=backend, type="input") >= 0


def test_other_paths_are_not_found(metrics_daemon: tuple[DaemonProcess, int]) -> None:
    _daemon, port = metrics_daemon
    with pytest.raises(urllib.error.HTTPError) as caught:
        scrape(port, "/secrets")
    caught.value.close()
    assert caught.value.code == 404
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"not http at all\r\n\r\n")
        assert sock.recv(100) == b""  # dropped; the next scrape still works
    assert "agentplex_sessions" in scrape(port)[0]


def test_a_taken_port_fails_the_start_in_one_line(short_tmp: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "agentplex.cli.main", "daemon", "--metrics-port", str(port)],
            env=dict(
                os.environ,
                AGENTPLEX_RUNTIME_DIR=str(short_tmp / "run"),
                AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 69
    assert done.stderr.strip() == (
        f"agentplex daemon: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )


def test_hooks_feed_counters_and_histograms() -> None:
    metrics = Metrics(["claude"])
    metrics.chunks_published("claude", 3, 300)
    metrics.chunks_published("claude", 2, 50)
    metrics.process_spawned("claude", 0.004)
    metrics.turn_finished("claude", 42.0)
    metrics.turn_usage("claude", p.Usage(input_tokens=10, output_tokens=5, cost_usd=0.25))
    samples = parse(metrics.exposition([], {}, "1.2.3"))
    assert value(samples, "agentplex_chunks_total", backend="claude") == 5
    assert value(samples, "agentplex_chunk_bytes_total", backend="claude") == 350
    assert value(samples, "agentplex_tokens_total", backend="claude", type="output") == 5
    assert value(samples, "agentplex_cost_usd_total", backend="claude") == 0.25
    assert value(samples, "agentplex_spawn_seconds_bucket", backend="claude", le="0.0025") == 0
    assert value(samples, "agentplex_spawn_seconds_bucket", backend="claude", le="0.005") == 1
    assert value(samples, "agentplex_spawn_seconds_bucket", backend="claude", le="+Inf") == 1
    assert value(samples, "agentplex_turn_seconds_bucket", backend="claude", le="30") == 0
    assert value(samples, "agentplex_turn_seconds_bucket", backend="claude", le="60") == 1
    assert value(samples, "agentplex_turn_seconds_sum", backend="claude") == 42.0
    assert value(samples, "agentplex_build_info", version="1.2.3") == 1


def test_label_values_are_escaped() -> None:
    info = session_info("s1", tag='a "quoted"\\tag\nline')
    samples = parse(Metrics().exposition([info], {}, "0"))
    labels = {"backend": "exec", "session_id": "s1", "tag": 'a "quoted"\\tag\nline'}
    assert value(samples, "agentplex_session_rss_bytes", **labels) == 0
