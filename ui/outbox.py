"""A page's send queue: bounded, never blocks whoever puts into it.

The daemon's events are fanned out to every page from one task; a page that reads slowly
(a throttled background tab, a phone on a bad link) must neither slow the others nor
grow the server's memory. Past its bound the outbox drops what it holds and closes: the
page then reconnects and catches up by ``replay``, as after any reconnect.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final

import anyio

MAX_FRAMES: Final = 10_000
MAX_CHARS: Final = 8 * 1024 * 1024
"""Past either bound, the page is too slow: its socket is closed (a chunk frame is a few
hundred characters; a batch or a replay page up to the daemon's page budget)."""

CLOSE_TOO_SLOW: Final = 1013
"""WebSocket close code "try again later": the page fell behind and reconnects."""
CLOSE_GOING_AWAY: Final = 1001
"""The server is stopping."""


@dataclass(frozen=True)
class Closed:
    """Why an outbox closed: the WebSocket close code and reason sent to the page."""

    code: int
    reason: str


class Outbox:
    """Frames waiting for one page's socket, within ``max_frames`` and ``max_chars``."""

    def __init__(self, max_frames: int = MAX_FRAMES, max_chars: int = MAX_CHARS) -> None:
        self._frames: collections.deque[str] = collections.deque()
        self._chars = 0
        self._max_frames = max_frames
        self._max_chars = max_chars
        self._wakeup = anyio.Event()
        self.closed: Closed | None = None

    def put(self, frame: str) -> None:
        """Queue a frame; past the bounds, drop everything and close (too slow)."""
        if self.closed is not None:
            return
        if len(self._frames) >= self._max_frames or self._chars + len(frame) > self._max_chars:
            self.close(CLOSE_TOO_SLOW, "too slow: reconnect and replay from your last seq")
            return
        self._frames.append(frame)
        self._chars += len(frame)
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Close at once: queued frames are dropped, :meth:`get` returns None."""
        if self.closed is None:
            self.closed = Closed(code, reason)
            self._frames.clear()
            self._chars = 0
            self._wakeup.set()

    async def get(self) -> str | None:
        """The next frame, waiting for one; None once closed."""
        while not self._frames and self.closed is None:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
        if self.closed is not None:
            return None
        frame = self._frames.popleft()
        self._chars -= len(frame)
        return frame
