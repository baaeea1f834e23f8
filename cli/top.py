"""``agentplex top``: every session, live, redrawn from the daemon's events.

The table comes from one ``list``; after that only events change it: lifecycle events
(``session.*``) carry each session's info, chunk events give the chunks/s, and the
heartbeat (every 2 s) refreshes ages and each session's CPU and memory. The daemon is
never polled. CPU/RSS come from the session's info when the daemon reports them, else
from this machine's /proc (the sessions are local processes).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import sys
import termios
import time
import tty
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import anyio
import msgspec

from agentplex import protocol as p
from agentplex.client.async_client import AsyncClient

if TYPE_CHECKING:
    from agentplex.supervisor.resources import TreeSampler

TOPICS = (p.SESSION_TOPIC, p.CHUNK_TOPIC, b"daemon.heartbeat")
FRAME_INTERVAL = 0.25
"""At most four frames a second, however many events arrive."""
QUIET_REDRAW = 5.0
"""With no events at all, still redraw this often (ages, rates, a silent daemon)."""
RATE_WINDOW = 5.0


@dataclass
class Row:
    """One session as top shows it."""

    info: p.SessionInfo
    arrivals: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    """When chunks arrived, and how many (a batch is one arrival of many)."""
    cpu_percent: float | None = None
    rss_bytes: int | None = None

    def rate(self, now: float) -> float:
        """Chunks per second over the last few seconds."""
        while self.arrivals and now - self.arrivals[0][0] > RATE_WINDOW:
            self.arrivals.popleft()
        return sum(count for _, count in self.arrivals) / RATE_WINDOW


class TopView:
    """The sessions' table, kept current by :meth:`apply`; :meth:`lines` draws it."""

    def __init__(
        self, listing: p.Sessions, daemon_pid: int, *, show_all: bool = False, now: float = 0.0
    ) -> None:
        self.rows: dict[str, Row] = {}
        self.active = listing.active
        self.daemon_pid = daemon_pid
        self.show_all = show_all
        self.heard_at = now
        self._sampler: TreeSampler | None = None
        for info in listing.sessions:
            self._upsert(info)

    def apply(self, event: p.Event, now: float) -> None:
        """Fold one event into the table."""
        self.heard_at = now
        match event:
            case p.Chunk(session_id=sid) if sid in self.rows:
                self.rows[sid].arrivals.append((now, 1))
            case p.ChunkBatch(session_id=sid, texts=texts) if sid in self.rows:
                self.rows[sid].arrivals.append((now, len(texts)))
            case p.SessionListChanged(sessions=sessions, active=active):
                self.active = active
                for info in sessions:
                    self._upsert(info)
            case p.SessionCreated(session=info) | p.SessionTerminated(session=info):
                self._upsert(info)
            case p.StatusChanged(session_id=sid, status=status) if sid in self.rows:
                row = self.rows[sid]
                row.info = msgspec.structs.replace(row.info, status=status)
            case p.ActiveChanged(session_id=sid):
                self.active = sid
            case p.Heartbeat(pid=pid):
                self.daemon_pid = pid
                self.sample_resources()

    def _upsert(self, info: p.SessionInfo) -> None:
        row = self.rows.get(info.id)
        if row is None:
            self.rows[info.id] = Row(info)
        else:
            row.info = info

    def sample_resources(self) -> None:
        """CPU and RSS of each live session: the daemon's figures, else from /proc."""
        from agentplex.supervisor.resources import TreeSampler

        live = [row for row in self.rows.values() if not row.info.status.ended]
        roots = {row.info.id: row.info.pid for row in live if row.info.pid is not None}
        self._sampler = self._sampler or TreeSampler()
        sampled = self._sampler.sample(roots, subreaper=self.daemon_pid)
        for row in live:
            tree = sampled.get(row.info.id)
            rss = getattr(row.info, "rss_bytes", None)
            cpu = getattr(row.info, "cpu_percent", None)
            row.rss_bytes = rss if rss is not None else (tree.rss_bytes if tree else None)
            row.cpu_percent = cpu if cpu is not None else (tree.cpu_percent if tree else None)

    def lines(self, width: int, height: int, now: float, wall: float) -> list[str]:
        """The screen: a header, the column titles, one line per session."""
        from agentplex.supervisor.notify import describe_sessions

        rows = sorted(self.rows.values(), key=lambda r: r.info.created_at)
        shown = [r for r in rows if self.show_all or not r.info.status.ended]
        quiet = now - self.heard_at
        state = f"daemon {self.daemon_pid}" + (f" quiet for {quiet:.0f}s" if quiet > 5 else "")
        clock = time.strftime("%H:%M:%S", time.localtime(wall))
        summary = describe_sessions([r.info for r in rows])
        out = [f"agentplex top · {state} · {summary} · {clock}   (q: quit)", _title()]
        room = max(height - len(out) - 1, 1)
        out += [self._line(r, now, wall) for r in shown[:room]]
        if len(shown) > room:
            out.append(f"… {len(shown) - room} more (a taller terminal shows them)")
        return [_clip(line, width) for line in out]

    def _line(self, row: Row, now: float, wall: float) -> str:
        info = row.info
        usage = info.usage
        tokens = usage.input_tokens + usage.output_tokens
        cells = [
            "*" if info.id == self.active else " ",
            _pad(info.persona_icon or "", 2),
            info.id[:8],
            _pad(info.tag or "-", 12),
            _pad(info.backend, 8),
            _pad(info.status.value, 13),
            f"{_age(wall - info.created_at):>5}",
            f"{'-' if row.cpu_percent is None else f'{row.cpu_percent:.1f}':>6}",
            f"{_bytes(row.rss_bytes):>7}",
            f"{row.rate(now):>7.1f}",
            f"{_count(tokens) if tokens else '-':>7}",
            f"{f'${usage.cost_usd:.2f}' if usage.cost_usd else '-':>7}",
        ]
        return " ".join(cells)


def _title() -> str:
    return (
        f"{'':1} {'':2} {'ID':<8} {'TAG':<12} {'BACKEND':<8} {'STATUS':<13} {'AGE':>5} "
        f"{'CPU%':>6} {'RSS':>7} {'CHUNK/S':>7} {'TOKENS':>7} {'COST':>7}"
    )


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n}B"
    size = n / 1024
    for unit in ("K", "M"):
        if size < 1024:
            return f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def _count(n: int) -> str:
    return str(n) if n < 10_000 else f"{n / 1000:.0f}k" if n < 10_000_000 else f"{n / 1e6:.0f}M"


def _width(text: str) -> int:
    """Terminal cells: wide characters take two, combining marks none."""
    cells = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        if ch == "\ufe0f":
            continue
        cells += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cells


def _pad(text: str, width: int) -> str:
    while _width(text) > width:
        text = text[:-1]
    return text + " " * (width - _width(text))


def _clip(line: str, width: int) -> str:
    line = line[: width + 8]
    while _width(line) > width:
        line = line[:-1]
    return line


# ---------------------------------------------------------------------- the terminal


class Screen:
    """Draws frames: in place on a terminal (alternate screen), one after another if not."""

    def __init__(self, out: TextIO, *, in_place: bool) -> None:
        self.out = out
        self.in_place = in_place

    def __enter__(self) -> Screen:
        if self.in_place:
            self.out.write("\x1b[?1049h\x1b[?25l")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.in_place:
            self.out.write("\x1b[?25h\x1b[?1049l")
            self.out.flush()

    def draw(self, lines: list[str]) -> None:
        if self.in_place:
            self.out.write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")
        else:
            self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()

    def size(self) -> tuple[int, int]:
        columns, rows = shutil.get_terminal_size((120, 40))
        return (columns, rows) if self.in_place else (1000, 10_000)


@contextmanager
def cbreak(fd: int | None) -> Iterator[None]:
    """Keys arrive one at a time (Ctrl-C still interrupts); restored on the way out."""
    if fd is None:
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Top:
    """Runs the view: events in, frames out, until q."""

    def __init__(self, screen: Screen, *, show_all: bool, keys_fd: int | None) -> None:
        self.screen = screen
        self.show_all = show_all
        self.keys_fd = keys_fd
        self._dirty = anyio.Event()

    async def run(self, client: AsyncClient, *, once: bool = False) -> None:
        daemon = await client.ping()
        async with client.subscribe(*TOPICS) as events:
            listing = await client.list()
            view = TopView(listing, daemon.pid, show_all=self.show_all, now=time.monotonic())
            view.sample_resources()
            self._draw(view)
            if once:
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._paint, view)
                tg.start_soon(self._watch_resize)
                if self.keys_fd is not None:
                    tg.start_soon(self._read_keys, self.keys_fd, tg.cancel_scope)
                async for event in events:
                    view.apply(event, time.monotonic())
                    self._dirty.set()

    def _draw(self, view: TopView) -> None:
        width, height = self.screen.size()
        self.screen.draw(view.lines(width, height, time.monotonic(), time.time()))

    async def _paint(self, view: TopView) -> None:
        """Redraw after changes, at most every FRAME_INTERVAL."""
        while True:
            with anyio.move_on_after(QUIET_REDRAW):
                await self._dirty.wait()
            self._dirty = anyio.Event()
            self._draw(view)
            await anyio.sleep(FRAME_INTERVAL)

    async def _watch_resize(self) -> None:
        with anyio.open_signal_receiver(signal.SIGWINCH) as signals:
            async for _ in signals:
                self._dirty.set()

    async def _read_keys(self, fd: int, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.wait_readable(fd)
            data = os.read(fd, 64)
            if not data or data.strip().lower().startswith(b"q"):
                scope.cancel()
                return


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("top", help="a live view of every session (q to quit)")
    t.add_argument("--all", "-a", action="store_true", help="also show sessions that ended")
    t.add_argument("--once", action="store_true", help="print the table once and exit")


def run(args: argparse.Namespace) -> int:
    """``agentplex top``."""
    in_place = sys.stdout.isatty() and not args.once
    keys_fd = sys.stdin.fileno() if in_place and sys.stdin.isatty() else None

    async def main() -> None:
        async with AsyncClient(timeout=args.timeout) as client:
            await top.run(client, once=args.once)

    with cbreak(keys_fd), Screen(sys.stdout, in_place=in_place) as screen:
        top = Top(screen, show_all=args.all, keys_fd=keys_fd)
        anyio.run(main)
    return 0
