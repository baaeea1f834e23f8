"""A running panel's ``session_metadata.json``, written behind the event loop.

A panel changes its metadata two or three times per turn (the turn handed out, its reply
recorded, a round over). Each write creates and renames a file, which waits for the
journal while the Flusher syncs: a millisecond and more on a busy disk, that on the loop
every panel and session waited out. While its panel runs, the :class:`MetadataWriter`
writes in a worker thread, in order, and only the latest state (changes made while a write
is under way are written together after it). Changes of two kinds:

- :meth:`~MetadataWriter.save`: written as soon as may be; :meth:`~MetadataWriter.
  wait_written` waits until the file says it (a turn handed out is on disk before its
  prompt goes out, so that a crash records it as cut);
- :meth:`~MetadataWriter.note`: kept until the next save (a reply recorded: its message is
  in the log already, and ``recover_cut_turns`` reads a turn answered there as answered,
  whatever the metadata says) — so a handover costs one write.

When the panel is not running (before its loop, after it, or a request on a panel that has
ended), a save is written at once, on the loop, as before; the writer's end writes what it
was left.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from agentplex.supervisor.panels.store import PanelMetadata

WriteNow = Callable[[PanelMetadata], None]
WriteOffLoop = Callable[[PanelMetadata], Awaitable[None]]


class MetadataWriter:
    """One panel's metadata file: the latest state, written in order, behind the loop."""

    def __init__(self, metadata: PanelMetadata, now: WriteNow, off_loop: WriteOffLoop) -> None:
        self._latest = metadata
        self._now, self._off_loop = now, off_loop
        self._changed = 0
        """Changes made so far (saves and notes), counted."""
        self._asked = 0
        """The changes up to this count are to be written."""
        self._written = 0
        """The changes up to this count are in the file."""
        self._wake = anyio.Event()
        self._landed = anyio.Event()
        self._running = False

    def note(self, metadata: PanelMetadata) -> None:
        """``metadata`` is the panel's state; written with the next save (or the end)."""
        self._latest = metadata
        self._changed += 1

    def save(self, metadata: PanelMetadata) -> None:
        """``metadata`` is the panel's state: write it (at once when the writer is not
        running, else in its thread as soon as the write under way is over)."""
        self.note(metadata)
        self._asked = self._changed
        if not self._running:
            self._write_now()
            return
        self._wake.set()

    async def wait_written(self) -> None:
        """Until the file holds every change saved before this call."""
        target = self._asked
        while self._written < target:
            await self._landed.wait()

    async def run(self) -> None:
        """Write saved changes until cancelled (the panel's task group); then, on the way out,
        what is left, noted changes too, on the loop."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._written < self._asked:
                    upto, metadata = self._changed, self._latest
                    await self._off_loop(metadata)  # not cancellable once begun
                    self._written = upto
                    self._landed.set()
                    self._landed = anyio.Event()
        finally:
            self._running = False
            if self._written < self._changed:
                self._write_now()

    def _write_now(self) -> None:
        self._now(self._latest)
        self._asked = self._written = self._changed
        self._landed.set()
        self._landed = anyio.Event()
