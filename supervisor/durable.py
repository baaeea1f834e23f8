"""Making files durable without stalling the event loop.

Everything a session writes reaches the page cache at once (so a daemon crash loses
nothing); the ``fsync`` that makes it survive a power cut is done off the loop, where a
slow disk stalls no session's output.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

log = structlog.get_logger(__name__)


class Flusher:
    """``fsync``s and closes finished files (transcripts) in a worker thread.

    An fsync takes microseconds on tmpfs and milliseconds to tens of them on a busy disk;
    done on the event loop, every session's output would wait behind each session that
    ends (100 sessions terminated together: 100 fsyncs in a row).
    """

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[tuple[int, Path]](math.inf)

    def sync_and_close(self, fd: int, path: Path) -> None:
        """Queue ``fd`` (of ``path``) to be synced and closed; once :meth:`run` has ended,
        do it at once."""
        try:
            self._send.send_nowait((fd, path))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            sync_and_close(fd, path)

    async def run(self) -> None:
        """Sync what is queued until cancelled; then, on the way out, what is left."""
        try:
            async for fd, path in self._receive:
                await anyio.to_thread.run_sync(sync_and_close, fd, path)
        finally:
            self._send.close()
            with self._receive:
                while True:
                    try:
                        fd, path = self._receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    sync_and_close(fd, path)


def sync_and_close(fd: int, path: Path) -> None:
    """``fsync`` then close ``fd`` (open on ``path``); a failure is logged, not raised."""
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("file_not_synced", path=str(path), error=exc.strerror)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many ``write(2)`` calls that takes.

    A write near a full disk or the file size limit (``RLIMIT_FSIZE``; Python ignores
    SIGXFSZ, so it fails with EFBIG) may write part of ``data`` and return the count: the
    rest is retried, and the error the retry meets is raised. The caller decides what to
    do with the part already written.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # never for a regular file; refuse to spin if it happens
            raise OSError(errno.EIO, "write(2) wrote nothing")
        view = view[written:]
