"""Flusher: finished files are synced and closed off the loop, and none is left at shutdown;
write_all: a write cut short is finished or fails loudly."""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import anyio
import pytest

from agentplex.supervisor.durable import Flusher, write_all


def _open(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, b"last line\n")
    return fd


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_queued_files_are_closed_by_the_running_flusher(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.jsonl" for i in range(3)]
    fds = [_open(path) for path in paths]

    async def main() -> None:
        flusher = Flusher()
        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher.run)
            for fd, path in zip(fds, paths, strict=True):
                flusher.sync_and_close(fd, path)
            with anyio.fail_after(5):
                # A worker thread closes them and says nothing: its effect is what to wait for.
                while not all(_closed(fd) for fd in fds):  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert [path.read_bytes() for path in paths] == [b"last line\n"] * 3


def test_files_still_queued_at_shutdown_are_closed_on_the_way_out(tmp_path: Path) -> None:
    queued = _open(tmp_path / "queued.jsonl")
    late = _open(tmp_path / "late.jsonl")

    async def main() -> Flusher:
        flusher = Flusher()
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled before it could take anything from its queue
            flusher.sync_and_close(queued, tmp_path / "queued.jsonl")
            await flusher.run()
        return flusher

    flusher = anyio.run(main)
    assert _closed(queued)
    flusher.sync_and_close(late, tmp_path / "late.jsonl")  # after run(): done at once
    assert _closed(late)


def test_write_all_finishes_a_short_write_or_raises_the_error_that_stopped_it(
    tmp_path: Path,
) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        write_all(fd, b"x" * 100)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150, hard))
        with pytest.raises(OSError) as raised:  # 50 bytes fit, then the limit
            write_all(fd, b"y" * 100)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        os.close(fd)
    assert raised.value.errno == errno.EFBIG
    assert (tmp_path / "f").read_bytes() == b"x" * 100 + b"y" * 50
