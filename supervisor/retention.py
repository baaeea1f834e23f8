"""Transcript retention: old transcripts are gzipped or deleted by policy, and purged on request.

Age is the time since a transcript was last written (its mtime), so a session that is
still being talked to never looks old. A live session's transcript is never touched.
Transcripts live at ``<state>/sessions/<tag>/<session-id>-<stamp>.jsonl`` and, once
compressed, ``.jsonl.gz`` beside it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from agentplex.protocol import SessionInfo
from agentplex.protocol.transcript_io import locate
from agentplex.supervisor.config import Config

DAY = 86400.0
SUFFIXES = (".jsonl", ".jsonl.gz")

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """Compress after ``compress_after`` seconds, delete after ``delete_after``; None: never."""

    compress_after: float | None = None
    delete_after: float | None = None

    @classmethod
    def from_config(cls, config: Config) -> RetentionPolicy:
        def seconds(days: float | None) -> float | None:
            return None if days is None else days * DAY

        return cls(seconds(config.retention_compress_days), seconds(config.retention_delete_days))

    @property
    def enabled(self) -> bool:
        return self.compress_after is not None or self.delete_after is not None


@dataclass
class Outcome:
    """What one pass did (or, dry, would do)."""

    compressed: list[Path] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    freed_bytes: int = 0

    def summary(self, *, dry_run: bool = False) -> str:
        """What was done, for a person: ``deleted 1 transcript (0.1 MiB)``."""
        parts = [
            f"{verb if dry_run else done} {counted(len(paths), 'transcript')}"
            for verb, done, paths in (
                ("would compress", "compressed", self.compressed),
                ("would delete", "deleted", self.deleted),
            )
            if paths or (done == "deleted" and not self.compressed)
        ]
        return f"{', '.join(parts)} ({self.freed_bytes / 1048576:.1f} MiB)"


def counted(n: int, noun: str) -> str:
    """``1 transcript``, ``2 transcripts``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def without_purged(sessions: list[SessionInfo]) -> list[SessionInfo]:
    """``sessions`` but the ended ones whose transcript was deleted (``purge``, retention):
    what is left of them cannot be replayed, so they leave ``list`` (and ``list --all``);
    asked for by id they answer ``transcript_gone``. Blocking: a stat per ended session."""
    return [s for s in sessions if not s.status.ended or locate(s.transcript) is not None]


def transcripts(sessions_dir: Path) -> Iterator[Path]:
    """Every transcript, plain or compressed, under ``sessions_dir``, in path order."""
    if not sessions_dir.is_dir():
        return
    for path in sorted(sessions_dir.glob("*/*")):
        if path.name.endswith(SUFFIXES) and path.is_file():
            yield path


def apply_policy(
    sessions_dir: Path, policy: RetentionPolicy, live: Collection[Path], now: float | None = None
) -> Outcome:
    """One retention pass: delete what is old enough, compress what is old enough."""
    now = time.time() if now is None else now
    live = {p.resolve() for p in live}
    outcome = Outcome()
    for path in transcripts(sessions_dir):
        if path.resolve() in live:
            continue
        try:
            _apply_one(path, now - path.stat().st_mtime, policy, outcome)
        except FileNotFoundError:
            continue  # purged by someone else meanwhile
    return outcome


def _apply_one(path: Path, age: float, policy: RetentionPolicy, outcome: Outcome) -> None:
    if policy.delete_after is not None and age > policy.delete_after:
        outcome.freed_bytes += _delete(path)
        outcome.deleted.append(path)
        return
    compressible = path.name.endswith(".jsonl")
    if compressible and policy.compress_after is not None and age > policy.compress_after:
        outcome.freed_bytes += compress(path)
        outcome.compressed.append(path)


def select(
    sessions_dir: Path,
    *,
    live: Collection[Path],
    tag: str | None = None,
    before: float | None = None,
) -> list[Path]:
    """Transcripts of ``tag`` and/or last written before ``before`` (epoch), not live."""
    if tag is not None:
        tag_dir = sessions_dir / tag
        if tag_dir.resolve().parent != sessions_dir.resolve() or tag in ("", ".", ".."):
            raise ValueError(f"{tag!r} is not a tag")
    live = {p.resolve() for p in live}
    return [
        path
        for path in transcripts(sessions_dir)
        if (tag is None or path.parent.name == tag)
        and (before is None or _mtime(path) < before)
        and path.resolve() not in live
    ]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone: nothing to select


def purge(paths: list[Path], *, dry_run: bool = False) -> Outcome:
    """Delete ``paths`` (or, dry, only count them)."""
    outcome = Outcome()
    for path in paths:
        try:
            outcome.freed_bytes += path.stat().st_size if dry_run else _delete(path)
        except FileNotFoundError:
            continue  # deleted meanwhile (retention, another purge): not ours to count
        outcome.deleted.append(path)
    return outcome


def compress(path: Path) -> int:
    """Replace ``x.jsonl`` by ``x.jsonl.gz`` with the same mtime; returns bytes saved."""
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(f".{path.name}.gz.partial")
    stat = path.stat()
    with path.open("rb") as source, gzip.open(partial, "wb") as sink:
        shutil.copyfileobj(source, sink)
    os.chmod(partial, 0o600)
    os.utime(partial, (stat.st_atime, stat.st_mtime))
    partial.replace(target)
    path.unlink()
    return stat.st_size - target.stat().st_size


def _delete(path: Path) -> int:
    size = path.stat().st_size
    path.unlink(missing_ok=True)
    return size


class RetentionService:
    """Applies the policy when the daemon starts, then every ``interval`` seconds."""

    def __init__(
        self, config: Config, live: Callable[[], Collection[Path]], interval: float | None = None
    ) -> None:
        self.policy = RetentionPolicy.from_config(config)
        self.sessions_dir = config.sessions_dir
        self.interval = config.retention_interval_hours * 3600 if interval is None else interval
        self._live = live

    async def run(self) -> None:
        """Run passes for ever (the daemon's task group cancels this)."""
        while True:
            await self.run_once()
            await anyio.sleep(self.interval)

    async def run_once(self) -> Outcome:
        """One pass in a worker thread; the live set is taken here, on the event loop."""
        live = set(self._live())
        try:
            outcome = await anyio.to_thread.run_sync(
                apply_policy, self.sessions_dir, self.policy, live
            )
        except OSError as exc:
            log.error("retention_failed", error=str(exc), sessions_dir=str(self.sessions_dir))
            return Outcome()
        if outcome.compressed or outcome.deleted:
            log.info(
                "retention_applied",
                summary=outcome.summary(),
                compressed=len(outcome.compressed),
                deleted=len(outcome.deleted),
                freed_bytes=outcome.freed_bytes,
            )
        return outcome
