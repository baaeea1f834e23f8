"""Opening a transcript wherever retention left it: ``x.jsonl``, or ``x.jsonl.gz`` once compressed.

A session's info names its transcript as it was created (``.jsonl``); retention later
replaces it by a gzipped copy beside it (same name plus ``.gz``, same mtime) and removes
the original, and ``purge`` deletes either. The daemon (replay from disk) and the client
library (``read_records``, ``logs --cat``) both read through :class:`TranscriptFile`, so an
old transcript reads like a new one, and one that is gone says so
(:class:`~agentplex.protocol.errors.TranscriptGone`) instead of a ``FileNotFoundError``.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

from agentplex.protocol.errors import TranscriptGone

COMPRESSED_SUFFIX: Final = ".gz"


def compressed_path(path: os.PathLike[str] | str) -> Path:
    """Where retention puts the gzipped copy of the transcript ``path``."""
    path = Path(path)
    return path.with_name(path.name + COMPRESSED_SUFFIX)


def locate(path: os.PathLike[str] | str) -> Path | None:
    """The file that holds the transcript ``path`` names now (itself, or its gzipped
    copy), or None if it was deleted."""
    for candidate in (Path(path), compressed_path(path)):
        if candidate.is_file():
            return candidate
    return None


class TranscriptFile:
    """A transcript open for reading, plain or gzipped alike: iterate it for its lines.

    ``seek`` and ``tell`` count bytes of the transcript as written (uncompressed), so
    offsets taken from a plain transcript stay good once it is compressed. A compressed
    file cut short (a full disk while it was written) ends at the break, like a plain
    transcript torn by a crash; ``broken`` then says why.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path, self.file = _open(Path(path))
        self.compressed = self.path.name.endswith(COMPRESSED_SUFFIX)
        self.broken: str | None = None
        """Why a compressed transcript ended early, if it did."""

    def seek(self, offset: int) -> None:
        self.file.seek(offset)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.file
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.broken = f"{self.path}: {exc}"

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> TranscriptFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _open(path: Path) -> tuple[Path, io.BufferedIOBase]:
    """The plain file first, then the gzipped one: retention writes the copy before it
    removes the original, so one of the two is always there until the transcript is
    deleted (and a file once open stays readable). A path that names the gzipped copy
    itself is read as such."""
    if path.name.endswith(COMPRESSED_SUFFIX):
        packed = path
    else:
        try:
            return path, open(path, "rb")
        except FileNotFoundError:
            packed = compressed_path(path)
    try:
        return packed, gzip.GzipFile(packed, "rb")
    except FileNotFoundError:
        raise gone(path) from None


def require(path: os.PathLike[str] | str) -> Path:
    """What :func:`locate` finds, or :class:`TranscriptGone` if the transcript was deleted."""
    found = locate(path)
    if found is None:
        raise gone(path)
    return found


def gone(path: os.PathLike[str] | str) -> TranscriptGone:
    """The error for a transcript that is no longer on disk."""
    return TranscriptGone(f"the transcript {path} was deleted (by `agentplex purge` or retention)")
