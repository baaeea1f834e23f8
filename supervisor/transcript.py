"""Each session's JSONL transcript: header, messages in, chunks, process exits, footer."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from pathlib import Path

from agentplex.protocol import Record, encode
from agentplex.protocol.errors import TooManyOpenFiles, TranscriptFailed
from agentplex.supervisor.durable import Flusher, sync_and_close
from agentplex.supervisor.validation import UNTAGGED


class Transcript:
    """An append-only JSONL file. Each call is one ``write(2)`` of whole lines."""

    def __init__(self, path: Path, *, writable: bool = True) -> None:
        self.path = path
        self._fd: int | None = None
        self._parked = False
        """Closed to save its descriptor; the next write reopens it (see :meth:`park`)."""
        self.failed: TranscriptFailed | None = None
        """Set by the first failed write; every later write fails the same way."""
        if writable:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.stat(path).st_size if path.exists() else 0
        """Bytes in the file: the offset where the next write lands."""

    @property
    def writable(self) -> bool:
        """Open for appending, or parked (not closed, not opened read-only)."""
        return self._fd is not None or self._parked

    @classmethod
    def create(cls, sessions_dir: Path, tag: str | None, session_id: str) -> Transcript:
        """Open ``<sessions>/<tag>/<session-id>-<UTC timestamp>.jsonl``."""
        directory = sessions_dir / (tag or UNTAGGED)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = directory / f"{session_id}-{stamp}.jsonl"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(path)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise TooManyOpenFiles(f"cannot open {path}: {exc.strerror}") from exc
            raise TranscriptFailed(f"cannot create {path}: {exc.strerror}") from exc

    def park(self) -> None:
        """Close the file but stay writable: the next write reopens it. For a session that
        may never write again (interrupted by a crash, or taken back without its pipes):
        a daemon restarted after crashes must not hold every such transcript open."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # its records were synced, or are in the page cache at least
            self._parked = True

    def discard(self) -> None:
        """Close and delete the file: a session that never began (its start was refused)."""
        self._parked = False
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self.path.unlink(missing_ok=True)

    def end_damaged_line(self) -> None:
        """After a crash the last line may be torn: start the next record on a line of its own."""
        if self.size:
            with open(self.path, "rb") as f:
                f.seek(self.size - 1)
                if f.read(1) != b"\n":
                    self._write_all(b"\n")

    def write(self, record: Record) -> None:
        """Append one record."""
        self.write_lines((encode(record),))

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Append already-encoded records, one line each, in one write."""
        self._write_all(b"\n".join(lines) + b"\n")

    def _write_all(self, data: bytes) -> None:
        if self.failed is not None:
            raise self.failed
        if self._fd is None and self._parked:
            self._unpark()
        if self._fd is None:
            raise TranscriptFailed(f"transcript {self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self.size += written
                view = view[written:]
        except OSError as exc:
            self.failed = TranscriptFailed(f"cannot write {self.path}: {exc.strerror}")
            raise self.failed from exc

    def _unpark(self) -> None:
        """Reopen a parked transcript; one that was removed meanwhile is not made again."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            # Not ``failed``: the shortage of descriptors may pass, and the write be retried.
            raise TranscriptFailed(f"cannot reopen {self.path}: {exc.strerror}") from exc
        self._parked = False

    def close(self, flusher: Flusher | None = None) -> None:
        """Close; further writes raise. Everything written is already in the page cache
        (safe from a daemon crash); the ``fsync`` that makes it safe from a power cut is
        done here, or off the event loop by ``flusher``."""
        self._parked = False
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if flusher is None:
                sync_and_close(fd, self.path)
            else:
                flusher.sync_and_close(fd, self.path)
