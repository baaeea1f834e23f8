"""Reading a child's pipe: bounded reads, split into lines, each line cut at a size limit,
and a line the child left unfinished given out once it has been quiet a moment.

The limit is on a line's size *as logged*: JSON escaping turns a control byte into six
(``\\u0001``) and an invalid UTF-8 byte into a replacement character plus its base64, so a
line is measured by what it becomes, and cut before it is escaped and journalled. A
transcript line, a PUB message and a replay page then stay within a known size, whatever
the agent writes.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Final

import anyio
import msgspec

READ_SIZE = 1 << 16

PARTIAL_AFTER: Final = 0.1
"""Seconds a pipe may stay quiet with an unfinished line before that line is given out as
a fragment (``partial``; the rest of the line follows in the next chunk). A prompt such
as ``Continue? [y/N] `` or ``>>> `` ends without a newline and would otherwise show only
once the person it waits for had answered it. A line written in several quick writes
stays whole: only a pause longer than this splits it."""

WORST_EXPANSION: Final = 8
"""More than the bytes one byte of output can become once logged: a control byte is six
(``\\u00XX``), and in a line that is not valid UTF-8 it is also in the base64 (4/3).
A line of at most ``max_line // WORST_EXPANSION`` bytes cannot pass ``max_line`` logged,
so only longer lines (rare) are measured: the hot path pays nothing."""

_encode_text = msgspec.json.Encoder().encode

Line = tuple[bytes, bool]
"""A line without its newline, and whether it is a fragment (cut at the size limit, or
the unterminated tail at end of file)."""


def logged_size(raw: bytes) -> int:
    """The bytes ``raw`` takes in a chunk as logged: its JSON-escaped text, plus its
    base64 when it is not valid UTF-8 (the chunk then carries both)."""
    try:
        return len(_encode_text(raw.decode())) - 2
    except UnicodeDecodeError:
        text = raw.decode(errors="replace")
        return len(_encode_text(text)) - 2 + len(base64.b64encode(raw))


def char_boundary(raw: bytes, at: int, low: int = 0) -> int:
    """``at``, moved back (by at most 3 bytes, never down to ``low``) to the start of a
    UTF-8 character, so that a cut does not break a character into two invalid halves."""
    if at >= len(raw):
        return len(raw)
    back = at
    while back > low + 1 and at - back < 3 and raw[back] & 0xC0 == 0x80:
        back -= 1
    return back if raw[back] & 0xC0 != 0x80 else at


def _incomplete_char(raw: bytes) -> int:
    """How many bytes at the end of ``raw`` begin a UTF-8 character they do not finish."""
    for back in range(1, min(3, len(raw)) + 1):
        byte = raw[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: its lead is further back
        if byte < 0xC0 or byte >= 0xF8:
            return 0  # ASCII, or a byte no character begins with: nothing waits for more
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return back if back < needed else 0
    return 0


class _Piece:
    """Consecutive blocks of a line being packed into one piece, and its logged size."""

    __slots__ = ("blocks", "length", "text_size", "valid")

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.length = 0
        self.text_size = 0
        self.valid = True

    def size_with(self, length: int, text_size: int, valid: bool) -> int:
        """The piece's logged size if a block of this shape were added."""
        total = self.length + length
        b64 = 0 if self.valid and valid else 4 * -(-total // 3)
        return self.text_size + text_size + b64

    def add(self, block: bytes, text_size: int, valid: bool) -> None:
        self.blocks.append(block)
        self.length += len(block)
        self.text_size += text_size
        self.valid &= valid


def _text_size(block: bytes) -> tuple[int, bool]:
    """A block's escaped text size (replacement characters for bad bytes), and whether it
    is valid UTF-8. Sizes of blocks cut at character boundaries add up."""
    try:
        return len(_encode_text(block.decode())) - 2, True
    except UnicodeDecodeError:
        return len(_encode_text(block.decode(errors="replace"))) - 2, False


def cut_to_fit(raw: bytes, fragment: bool, max_line: int) -> list[Line]:
    """``raw`` as pieces each at most ``max_line`` bytes logged: every piece but the last
    is a fragment, the last keeps ``fragment``.

    One pass: the line is measured in blocks of ``max_line / 32`` bytes (each of which
    fits whatever it holds), packed greedily into pieces. A piece is never empty: with a
    limit below 8 bytes a single byte may go over it.
    """
    if len(raw) <= max_line // WORST_EXPANSION or logged_size(raw) <= max_line:
        return [(raw, fragment)]
    step = max(1, max_line // (4 * WORST_EXPANSION))
    pieces: list[Line] = []
    piece = _Piece()
    at = 0
    while at < len(raw):
        end = char_boundary(raw, at + step, at)
        block = raw[at:end]
        text_size, valid = _text_size(block)
        if piece.blocks and piece.size_with(len(block), text_size, valid) > max_line:
            pieces.append((b"".join(piece.blocks), True))
            piece = _Piece()
        piece.add(block, text_size, valid)
        at = end
    pieces.append((b"".join(piece.blocks), fragment))
    return pieces


class LineSplitter:
    """Splits a byte stream into lines, never holding more than ``max_line`` bytes, and
    never giving out a line over ``max_line`` bytes once logged (see :func:`logged_size`)."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._safe = max(1, max_line // WORST_EXPANSION)
        self._tail = b""

    def feed(self, data: bytes) -> list[Line]:
        """The complete lines (and over-long fragments) that ``data`` finishes."""
        parts = (self._tail + data).split(b"\n")
        self._tail = parts.pop()
        lines: list[Line] = [(part, False) for part in parts]
        while len(self._tail) > self._max_line:
            at = char_boundary(self._tail, self._max_line)
            lines.append((self._tail[:at], True))
            self._tail = self._tail[at:]
        if lines and any(len(line) > self._safe for line, _ in lines):
            return self._cut(lines)
        return lines

    def _cut(self, lines: list[Line]) -> list[Line]:
        cut: list[Line] = []
        for line, fragment in lines:
            if len(line) <= self._safe:
                cut.append((line, fragment))
                continue
            # By length first, where the tail would have been cut had the line come in
            # many reads: the pieces do not depend on how the stream was read.
            while len(line) > self._max_line:
                at = char_boundary(line, self._max_line)
                cut += cut_to_fit(line[:at], True, self._max_line)
                line = line[at:]
            cut += cut_to_fit(line, fragment, self._max_line)
        return cut

    @property
    def holding(self) -> bool:
        """Whether part of a line waits for the rest of it (an incomplete character alone
        does not count: :meth:`take_unfinished` would keep it)."""
        return len(self._tail) > _incomplete_char(self._tail)

    def take_unfinished(self) -> list[Line]:
        """The line so far, as a fragment (the pipe went quiet mid-line); an incomplete
        UTF-8 character at its end stays to be joined by the rest of it."""
        cut = len(self._tail) - _incomplete_char(self._tail)
        if cut <= 0:
            return []
        head, self._tail = self._tail[:cut], self._tail[cut:]
        return self._cut([(head, True)])

    def flush(self) -> list[Line]:
        """The unterminated tail (at end of file, or after a quiet period), as a fragment."""
        tail, self._tail = self._tail, b""
        return self._cut([(tail, True)]) if tail else []


async def pump_lines(
    fd: int,
    max_line: int,
    deliver: Callable[[list[Line]], None],
    partial_after: float | None = None,
) -> None:
    """Read ``fd`` until EOF, handing each read's lines to ``deliver`` in one batch; with
    ``partial_after``, an unfinished line is handed out (a fragment) once the pipe has been
    quiet that many seconds.

    The pipe itself is the backpressure: while ``deliver`` runs nothing is read, so a
    child that writes faster than the daemon logs is slowed by its full pipe.
    """
    splitter = LineSplitter(max_line)
    try:
        while True:
            if not await _readable_within(fd, partial_after if splitter.holding else None):
                deliver(splitter.take_unfinished())  # quiet mid-line: a prompt, say
                continue
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


async def _readable_within(fd: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is readable (True), or ``timeout`` seconds pass first (False)."""
    if timeout is None:
        await anyio.wait_readable(fd)
        return True
    with anyio.move_on_after(timeout):
        await anyio.wait_readable(fd)
        return True
    return False
