"""Prometheus metrics: counters fed by hooks, gauges computed at scrape time, and a tiny
HTTP server on 127.0.0.1 that serves them as text exposition format 0.0.4.

Counters and histograms live in :class:`Metrics`, fed by its hook methods from the session
code. Gauges (sessions by status, per-session RSS/CPU, the daemon's own RSS and fds) are
read when Prometheus scrapes, from the session registry and /proc, so they cost nothing
between scrapes.
"""

from __future__ import annotations

import bisect
import math
import os
import resource
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import Listener, SocketAttribute, SocketStream

from agentplex.protocol import SessionInfo, Usage
from agentplex.protocol.errors import MetricsUnavailable
from agentplex.supervisor.descriptors import FdBudget
from agentplex.supervisor.resources import TreeSampler, TreeUsage, daemon_usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SPAWN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TURN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 5.0
SESSION_CPU_HELP = "CPU of a session's processes since the previous scrape (100 = one core)."

log = structlog.get_logger(__name__)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]
"""A sample's name (a histogram family has several), its labels and its value."""


@dataclass
class Histogram:
    """Cumulative buckets per label set, as Prometheus wants them."""

    buckets: tuple[float, ...]
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: defaultdict[Labels, float] = field(default_factory=lambda: defaultdict(float))

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.declare(labels)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def declare(self, labels: Labels) -> list[int]:
        """The counts of a label set, created at 0 if new."""
        if labels not in self.counts:
            self.counts[labels] = [0] * (len(self.buckets) + 1)
        return self.counts[labels]

    def samples(self, name: str) -> Iterable[Sample]:
        for labels, counts in sorted(self.counts.items()):
            total = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                total += count
                yield f"{name}_bucket", (*labels, ("le", _number(bound))), total
            yield f"{name}_sum", labels, self.sums[labels]
            yield f"{name}_count", labels, total


class Metrics:
    """The daemon's counters. Hooks are cheap dict updates, safe to call on the hot path."""

    def __init__(self, backends: Iterable[str] = ()) -> None:
        self.chunks: defaultdict[Labels, float] = defaultdict(float)
        self.chunk_bytes: defaultdict[Labels, float] = defaultdict(float)
        self.tokens: defaultdict[Labels, float] = defaultdict(float)
        self.cost: defaultdict[Labels, float] = defaultdict(float)
        self.spawn = Histogram(SPAWN_BUCKETS)
        self.turns = Histogram(TURN_BUCKETS)
        self.fds: FdBudget | None = None
        """The daemon's descriptor budget, once it serves (for its gauges)."""
        for backend in backends:
            self._declare(backend)

    def _declare(self, backend: str) -> None:
        """Every counter of a backend, at 0, so dashboards see the series from the start."""
        labels = _backend(backend)
        for counter in (self.chunks, self.chunk_bytes, self.cost):
            counter[labels] += 0
        for kind in ("input", "output", "cached"):
            self.tokens[(*labels, ("type", kind))] += 0
        self.spawn.declare(labels)
        self.turns.declare(labels)

    # ------------------------------------------------------------------ hooks

    def chunks_published(self, backend: str, count: int, nbytes: int) -> None:
        """A batch of ``count`` chunks, ``nbytes`` of encoded JSON, went out."""
        labels = _backend(backend)
        self.chunks[labels] += count
        self.chunk_bytes[labels] += nbytes

    def process_spawned(self, backend: str, seconds: float) -> None:
        """An agent process was started; ``seconds`` from the request to a running child."""
        self.spawn.observe(_backend(backend), seconds)

    def turn_finished(self, backend: str, seconds: float) -> None:
        """A turn ended (result, failure or interrupt) ``seconds`` after it began."""
        self.turns.observe(_backend(backend), seconds)

    def turn_usage(self, backend: str, usage: Usage) -> None:
        """The tokens and cost one turn's result reported."""
        labels = _backend(backend)
        self.tokens[(*labels, ("type", "input"))] += usage.input_tokens
        self.tokens[(*labels, ("type", "output"))] += usage.output_tokens
        self.tokens[(*labels, ("type", "cached"))] += usage.cached_tokens
        self.cost[labels] += usage.cost_usd

    # ------------------------------------------------------------------ exposition

    def exposition(
        self, sessions: Sequence[SessionInfo], trees: dict[str, TreeUsage], version: str
    ) -> str:
        """Everything, in Prometheus text format 0.0.4."""
        out: list[str] = []
        build = [("agentplex_build_info", (("version", version),), 1.0)]
        _family(out, "agentplex_build_info", "gauge", "The daemon's version.", build)
        counts = _session_counts(sessions)
        _family(out, "agentplex_sessions", "gauge", "Sessions by backend and status.", counts)
        self._counters(out)
        for name, help_text, histogram in (
            ("agentplex_spawn_seconds", "Time to start an agent process.", self.spawn),
            ("agentplex_turn_seconds", "How long turns take.", self.turns),
        ):
            _family(out, name, "histogram", help_text, histogram.samples(name))
        _session_gauges(out, sessions, trees)
        _daemon_gauges(out)
        if self.fds is not None:
            _fd_gauges(out, self.fds)
        return "\n".join(out) + "\n"

    def _counters(self, out: list[str]) -> None:
        for name, help_text, values in (
            ("agentplex_chunks_total", "Chunks published.", self.chunks),
            ("agentplex_chunk_bytes_total", "Bytes of chunk JSON published.", self.chunk_bytes),
            ("agentplex_tokens_total", "Tokens agents reported, by type.", self.tokens),
            ("agentplex_cost_usd_total", "Cost agents reported, in US dollars.", self.cost),
        ):
            samples = [(name, labels, value) for labels, value in sorted(values.items())]
            _family(out, name, "counter", help_text, samples)


def _session_counts(sessions: Sequence[SessionInfo]) -> list[Sample]:
    counts: defaultdict[Labels, int] = defaultdict(int)
    for s in sessions:
        counts[(("backend", s.backend), ("status", s.status.value))] += 1
    return [("agentplex_sessions", labels, n) for labels, n in sorted(counts.items())]


def _session_gauges(
    out: list[str], sessions: Sequence[SessionInfo], trees: dict[str, TreeUsage]
) -> None:
    live = [s for s in sessions if not s.status.ended]
    rows = [(_session_labels(s), trees.get(s.id, TreeUsage())) for s in live]
    for name, help_text, attribute in (
        ("agentplex_session_rss_bytes", "Resident memory of a session's processes.", "rss_bytes"),
        ("agentplex_session_cpu_percent", SESSION_CPU_HELP, "cpu_percent"),
        ("agentplex_session_processes", "Processes a live session runs.", "processes"),
    ):
        samples = [(name, labels, float(getattr(u, attribute))) for labels, u in rows]
        _family(out, name, "gauge", help_text, samples)


def _session_labels(s: SessionInfo) -> Labels:
    return (("backend", s.backend), ("session_id", s.id), ("tag", s.tag or ""))


def _daemon_gauges(out: list[str]) -> None:
    rss, fds, cpu, started = daemon_usage()
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for name, kind, help_text, value in (
        ("process_resident_memory_bytes", "gauge", "The daemon's resident memory.", rss),
        ("process_open_fds", "gauge", "The daemon's open file descriptors.", fds),
        ("process_max_fds", "gauge", "The daemon's file descriptor limit.", max_fds),
        ("process_cpu_seconds_total", "counter", "The daemon's CPU time.", cpu),
        ("process_start_time_seconds", "gauge", "When the daemon started (epoch).", started),
    ):
        _family(out, name, kind, help_text, [(name, (), value)])


def _fd_gauges(out: list[str], fds: FdBudget) -> None:
    for name, help_text, value in (
        ("agentplex_fd_reserve", "Descriptors kept free (fd_reserve).", fds.reserve),
        ("agentplex_fd_session_capacity", "Sessions the descriptor budget fits.", fds.capacity),
    ):
        _family(out, name, "gauge", help_text, [(name, (), float(value))])


def _family(
    out: list[str], name: str, kind: str, help_text: str, samples: Iterable[Sample]
) -> None:
    out.append(f"# HELP {name} {_escape_help(help_text)}")
    out.append(f"# TYPE {name} {kind}")
    for sample_name, labels, value in samples:
        out.append(f"{sample_name}{_labels(labels)} {_number(value)}")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels) + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _backend(backend: str) -> Labels:
    return (("backend", backend),)


# ---------------------------------------------------------------------- HTTP


Snapshot = Callable[[], tuple[list[SessionInfo], str | None]]


class MetricsServer:
    """Serves ``GET /metrics`` over HTTP/1.0: :meth:`bind` first, then :meth:`serve`."""

    def __init__(self, metrics: Metrics, snapshot: Snapshot, version: str) -> None:
        self.metrics = metrics
        self.port: int | None = None
        self._snapshot = snapshot
        self._version = version
        self._sampler = TreeSampler()
        self._sampling = anyio.Lock()
        self._listener: Listener[SocketStream] | None = None

    async def bind(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        try:
            self._listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            raise MetricsUnavailable(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.port = self._listener.extra(SocketAttribute.local_port)
        log.info("metrics_listening", url=f"http://{host}:{self.port}/metrics")
        return self.port

    async def serve(self) -> None:
        """Answer scrapes until cancelled, then close the listener."""
        assert self._listener is not None, "bind() first"
        async with self._listener:
            await self._listener.serve(self._handle)

    async def render(self) -> str:
        """A scrape: the registry is read here, on the event loop; /proc in a thread."""
        sessions, _active = self._snapshot()
        roots = {s.id: s.pid for s in sessions if s.pid is not None and not s.status.ended}
        async with self._sampling:
            trees = await anyio.to_thread.run_sync(self._sample, roots)
        return self.metrics.exposition(sessions, trees, self._version)

    def _sample(self, roots: dict[str, int]) -> dict[str, TreeUsage]:
        return self._sampler.sample(roots, subreaper=os.getpid())

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    method, path = await _read_request(stream)
                    await stream.send(await self._respond(method, path))
            except (TimeoutError, ValueError, anyio.EndOfStream, anyio.BrokenResourceError):
                return  # a client that hung up or spoke no HTTP gets nothing

    async def _respond(self, method: str, path: str) -> bytes:
        if path.split("?", 1)[0] not in ("/metrics", "/"):
            return _http(404, "Not Found", b"try /metrics\n")
        if method != "GET":
            return _http(405, "Method Not Allowed", b"GET only\n")
        try:
            body = (await self.render()).encode()
        except Exception as exc:  # a failed scrape must not take the daemon down with it
            log.exception("metrics_scrape_failed")
            return _http(500, "Internal Server Error", f"{exc!r}\n".encode())
        return _http(200, "OK", body, CONTENT_TYPE)


async def _read_request(stream: SocketStream) -> tuple[str, str]:
    """The method and path of an HTTP request; its headers are read and ignored."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        data += await stream.receive()
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    parts = data.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    return parts[0], parts[1]


def _http(code: int, reason: str, body: bytes, content_type: str = "text/plain") -> bytes:
    head = (
        f"HTTP/1.0 {code} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
