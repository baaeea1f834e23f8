"""Each session's JSONL transcript: header, messages in, chunks, process exits, footer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from agentplex.client.protocol import Record, encode


class TranscriptWriteError(OSError):
    """Writing a transcript failed (a full disk, a removed directory...)."""


class Transcript:
    """An append-only JSONL file. Each call is one ``write(2)`` of whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size
        """Bytes in the file: the offset where the next write lands."""

    @classmethod
    def create(cls, sessions_dir: Path, tag: str | None, session_id: str) -> Transcript:
        """Open ``<sessions>/<tag>/<session-id>-<UTC timestamp>.jsonl``."""
        directory = sessions_dir / (tag or "untagged")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return cls(directory / f"{session_id}-{stamp}.jsonl")

    def write(self, record: Record) -> None:
        """Append one record."""
        self.write_lines((encode(record),))

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Append already-encoded records, one line each, in one write."""
        self._write_all(b"\n".join(lines) + b"\n")

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            raise TranscriptWriteError(f"transcript {self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self.size += written
                view = view[written:]
        except OSError as exc:
            raise TranscriptWriteError(exc.errno, f"writing {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Flush to disk and close; further writes raise."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
