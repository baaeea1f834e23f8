"""Reading a child's pipe: bounded reads, split into lines, each line cut at a size limit."""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio

READ_SIZE = 1 << 16

Line = tuple[bytes, bool]
"""A line without its newline, and whether it is a fragment (cut at the size limit, or
the unterminated tail at end of file)."""


class LineSplitter:
    """Splits a byte stream into lines, never holding more than ``max_line`` bytes."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._tail = b""

    def feed(self, data: bytes) -> list[Line]:
        """The complete lines (and over-long fragments) that ``data`` finishes."""
        parts = (self._tail + data).split(b"\n")
        self._tail = parts.pop()
        lines: list[Line] = [(part, False) for part in parts]
        while len(self._tail) > self._max_line:
            lines.append((self._tail[: self._max_line], True))
            self._tail = self._tail[self._max_line :]
        if lines and any(len(line) > self._max_line for line, _ in lines):
            return self._cut(lines)
        return lines

    def _cut(self, lines: list[Line]) -> list[Line]:
        cut: list[Line] = []
        for line, fragment in lines:
            while len(line) > self._max_line:
                cut.append((line[: self._max_line], True))
                line = line[self._max_line :]
            cut.append((line, fragment))
        return cut

    def flush(self) -> list[Line]:
        """The unterminated tail, at end of file."""
        tail, self._tail = self._tail, b""
        return [(tail, True)] if tail else []


async def pump_lines(fd: int, max_line: int, deliver: Callable[[list[Line]], None]) -> None:
    """Read ``fd`` until EOF, handing each read's lines to ``deliver`` in one batch.

    The pipe itself is the backpressure: while ``deliver`` runs nothing is read, so a
    child that writes faster than the daemon logs is slowed by its full pipe.
    """
    splitter = LineSplitter(max_line)
    try:
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            if not data:
                return
            lines = splitter.feed(data)
            if lines:
                deliver(lines)
    finally:
        rest = splitter.flush()
        if rest:
            deliver(rest)
