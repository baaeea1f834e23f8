"""What every benchmark shares: options, the machine, statistics, reports, the start gate,
process helpers, and an isolated agentplex daemon with a raw control channel.

The peers (circus, supervisord) live in ``_peers.py``, the raw-limit pipelines in
``_bare.py``, the subscriber loops in ``_receive.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import zmq

from agentplex import protocol as p

HERE = Path(__file__).resolve().parent
CHILD = str(HERE / "_child.py")
PYTHON = sys.executable
READY_TIMEOUT = 30.0


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """How big and how often: ``quick`` is the CI smoke size (1 run, tiny workloads)."""

    quick: bool = False
    runs: int = 5
    json: bool = False
    peers: bool = True
    """Also run circus and supervisord (when installed)."""
    save: str | None = None
    """Also write every run as JSON to this file."""


def runs_text(options: Options) -> str:
    """How the figures in a table were made, for its title."""
    if options.runs == 1:
        return "1 run"
    return f"{options.runs} runs: median [min–max]"


def parse_options(description: str, argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 run (CI smoke)")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 5; quick 1)")
    parser.add_argument("--json", action="store_true", help="print every run as JSON")
    parser.add_argument("--no-peers", action="store_true", help="skip circus and supervisord")
    parser.add_argument("--save", metavar="FILE", help="also write every run as JSON to FILE")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs else (1 if args.quick else 5)
    return Options(
        quick=args.quick,
        runs=max(runs, 1),
        json=args.json,
        peers=not args.no_peers,
        save=args.save,
    )


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    """Cores, CPU, memory, kernel, Python, package versions, load average now."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in _PACKAGES},
        "agentplex_from": str(Path(p.__file__).resolve().parent.parent),
        "libzmq": zmq.zmq_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


_PACKAGES = ("agentplex", "msgspec", "pyzmq", "anyio", "circus", "supervisor", "tornado")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe_machine(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    load = " ".join(str(x) for x in info["load_average"])
    return (
        f"{info['date']}; agentplex from {info['agentplex_from']}; {info['cores']} cores "
        f"({info['cpu']}), {info['memory_gib']} GiB, "
        f"Linux {info['kernel']}, Python {info['python']}; {versions}, libzmq "
        f"{info['libzmq']}; load average {load}"
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Spread:
    """Median and range of one measure over the runs."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, fmt: Callable[[float], str]) -> str:
        if self.runs == 1:
            return fmt(self.median)
        return f"{fmt(self.median)} [{fmt(self.low)}–{fmt(self.high)}]"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def si(value: float) -> str:
    """1234567 -> '1.23 M'."""
    for scale, suffix in ((1e6, " M"), (1e3, " k")):
        if abs(value) >= scale * 0.9995:  # 999,950 is "1 M", not "1e+03 k"
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


# --------------------------------------------------------------------------- reports


@dataclass
class Measure:
    """A column: the key it reads from each run's record, and how it is shown."""

    title: str
    key: str
    fmt: Callable[[float], str] = si


@dataclass
class Report:
    """One benchmark's table: rows of runs under labels, shown as medians [min–max]."""

    title: str
    labels: list[str]
    measures: list[Measure]
    rows: list[tuple[list[str], list[dict[str, Any]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, labels: list[str], runs: list[dict[str, Any]]) -> None:
        self.rows.append((labels, runs))

    def render(self) -> str:
        head = [*self.labels, *(m.title for m in self.measures)]
        lines = [f"### {self.title}", "", _row(head), _row(["---"] * len(head))]
        for labels, runs in self.rows:
            cells = [self._cell(m, runs) for m in self.measures]
            lines.append(_row([*labels, *cells]))
        lines.extend(["", *self.notes] if self.notes else [])
        return "\n".join(lines)

    @staticmethod
    def _cell(measure: Measure, runs: list[dict[str, Any]]) -> str:
        values = [r[measure.key] for r in runs if r.get(measure.key) is not None]
        spread = Spread.of(values)
        return spread.show(measure.fmt) if spread else "–"

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "rows": [{"labels": labels, "runs": runs} for labels, runs in self.rows],
            "notes": self.notes,
        }


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(
    description: str, measure: Callable[[Options], Report], argv: Sequence[str] | None = None
) -> int:
    """A benchmark script's entry point: options, the machine, the table (or JSON)."""
    options = parse_options(description, argv)
    before = machine()
    report = measure(options)
    after = machine()
    doc = {
        "machine": before,
        "load_average_after": after["load_average"],
        "reports": [report.as_json()],
    }
    if options.save:
        Path(options.save).write_text(json.dumps(doc, indent=2))
    if options.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"machine: {describe_machine(before)}; after: {after['load_average']}\n")
        print(report.render())
    return 0


def run_in_turns(
    report: Report,
    labels: list[str],
    chosen: Sequence[tuple[str, Callable[[Any], dict[str, Any]]]],
    workload: Any,
    runs: int,
    what: str,
) -> None:
    """Run each system ``runs`` times, the systems taking turns (so a disturbance on the
    machine hits them alike), and add each system's runs to ``report``."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in chosen}
    for i in range(runs):
        for name, run in chosen:
            log(f"{what} {name} run {i + 1}/{runs}")
            results[name].append(run(workload))
    for name, _ in chosen:
        report.add([name, *labels], results[name])


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- work dirs


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A fresh short temporary dir (ipc:// paths are limited to 107 bytes), removed after."""
    path = Path(tempfile.mkdtemp(prefix="apb-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Gate:
    """The start gate: children block on a shared lock this holds until :meth:`release`."""

    def __init__(self, base: Path) -> None:
        self.path = str(base / "gate")
        self.ready_dir = base / "ready"
        self.ready_dir.mkdir()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def child_args(self) -> list[str]:
        return [self.path, str(self.ready_dir)]

    def wait_ready(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` children are at the gate."""
        deadline = time.monotonic() + timeout
        while len(os.listdir(self.ready_dir)) < count:
            if time.monotonic() > deadline:
                found = len(os.listdir(self.ready_dir))
                raise TimeoutError(f"only {found} of {count} children reached the gate")
            time.sleep(0.005)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def count_descendants(pid: int, name: str) -> int:
    """Live, non-zombie descendants of ``pid`` whose process name is ``name``."""
    found = 0
    for proc in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.name() == name and proc.status() != psutil.STATUS_ZOMBIE:
                found += 1
    return found


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.002, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def stop_process_tree(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM a supervisor, wait, then SIGKILL it and anything it left behind."""
    try:
        leftovers = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        leftovers = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {process.pid} ignored SIGTERM for {timeout} s: SIGKILL")
            process.kill()
            process.wait()
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)


# --------------------------------------------------------------------------- agentplex


class Control:
    """A raw DEALER on the daemon's control socket: requests pipelined, replies by id."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self._socket = ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)

    def call(self, request: p.Request, timeout: float = 30.0) -> p.Reply:
        return self.call_many([request], timeout)[0]

    def call_many(self, requests: Sequence[p.Request], timeout: float = 60.0) -> list[p.Reply]:
        """Send every request at once; return the replies in request order."""
        ids = []
        for request in requests:
            rid = next(self._ids)
            ids.append(rid)
            self._socket.send(p.encode(_with_id(request, rid)))
        replies: dict[int, p.Reply] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(ids):
            left = deadline - time.monotonic()
            if left <= 0 or not self._socket.poll(int(left * 1000)):
                raise TimeoutError(f"{len(ids) - len(replies)} requests got no reply")
            reply = p.reply_decoder.decode(self._socket.recv())
            if isinstance(reply, p.Error):
                raise RuntimeError(f"daemon error {reply.code}: {reply.message}")
            replies[reply.id] = reply
        return [replies[rid] for rid in ids]

    def close(self) -> None:
        self._socket.close()


def _with_id(request: p.Request, rid: int) -> p.Request:
    import msgspec

    return msgspec.structs.replace(request, id=rid)


class AgentplexDaemon:
    """``agentplex daemon`` in its own process with dirs under ``base`` (as tests do)."""

    def __init__(self, base: Path, *flags: str) -> None:
        self.base = base
        self.runtime_dir = base / "run"
        self.state_dir = base / "state"
        self.log_path = base / "daemon.log"
        self.flags = flags
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def events_endpoint(self) -> str:
        return f"ipc://{self.runtime_dir / 'events.sock'}"

    @property
    def control_endpoint(self) -> str:
        return f"ipc://{self.runtime_dir / 'control.sock'}"

    def __enter__(self) -> AgentplexDaemon:
        env = dict(
            os.environ,
            AGENTPLEX_RUNTIME_DIR=str(self.runtime_dir),
            AGENTPLEX_STATE_DIR=str(self.state_dir),
        )
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "agentplex.cli.main",
                    "daemon",
                    "--log-format",
                    "json",
                    *self.flags,
                ],
                env=env,
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        try:
            wait_until(self._ready, READY_TIMEOUT, 0.01, "the agentplex daemon")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"daemon exited: {self.log_path.read_text()[-2000:]}")
        return b'"daemon_ready"' in self.log_path.read_bytes()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> float:
        """SIGTERM the daemon (it ends every session first); seconds until it exited."""
        t0 = time.perf_counter()
        if self.process is not None:
            stop_process_tree(self.process, timeout=120.0)
        return time.perf_counter() - t0

    def subscribe(
        self, ctx: zmq.Context[zmq.Socket[bytes]], control: Control, *prefixes: bytes
    ) -> zmq.Socket[bytes]:
        """A raw SUB on the events socket, returned once the subscription is live
        (``sync`` requests until the ``daemon.sync`` mark arrives)."""
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        token = secrets.token_hex(8)
        for prefix in (*prefixes, f"daemon.sync.{token}".encode()):
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        sub.connect(self.events_endpoint)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            control.call(p.Sync(token=token))
            if _saw_sync(sub, token):
                return sub
        raise TimeoutError("the events subscription never became live")


def _saw_sync(sub: zmq.Socket[bytes], token: str) -> bool:
    mark = f"daemon.sync.{token}".encode()
    while sub.poll(50):
        topic, _payload = sub.recv_multipart()
        if topic == mark:
            return True
    return False


def subscriber(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, *topics: bytes, handshake: bool = False
) -> zmq.Socket[bytes]:
    """A SUB of ``topics`` (none: everything), unbounded receive queue.

    With ``handshake``, returns only once connected to a bound publisher, plus 100 ms for
    the subscription to travel (for publishers that cannot say they saw it; agentplex's
    ``sync`` and the bare publishers' XPUB can).
    """
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in topics or (b"",):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED) if handshake else None
    sub.connect(endpoint)
    if monitor is not None:
        try:
            if not monitor.poll(30_000):
                raise TimeoutError(f"no publisher at {endpoint}")
            monitor.recv_multipart()
        finally:
            sub.disable_monitor()
            monitor.close()
        time.sleep(0.1)
    return sub


def start_exec(argv: list[str], cwd: Path) -> p.Start:
    """The request that starts ``argv`` as an ``exec`` session."""
    return p.Start(backend="exec", argv=argv, cwd=str(cwd))
