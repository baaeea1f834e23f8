"""A session's chunk history for replay: the recent tail in memory, the rest on disk.

The ring keeps the newest chunks (bounded by count and bytes) so a subscriber that fell
a little behind catches up without touching the disk. Older chunks come from the
transcript, found through a sparse seq -> file offset index, so paging through a long
session reads each byte once. The transcript is read plain or, once retention compressed
it, gzipped (offsets count uncompressed bytes, so the index stays good); one deleted by
``purge`` raises ``TranscriptGone``.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agentplex.protocol import Footer
from agentplex.protocol.transcript_io import TranscriptFile, require

INDEX_EVERY = 256
"""Index about one chunk in this many (its seq and its record's offset in the transcript)."""
INDEX_BYTES = 1 << 20
"""... and at least one record in this many bytes of transcript: with megabyte chunks a
page would otherwise read the transcript from far behind where it starts (paging through
a session of huge chunks was quadratic)."""

PAGE_BYTES = 4 << 20
"""The default byte budget of a replay page (the daemon's is ``Config.replay_page_bytes``)."""

Entry = tuple[int, int, bytes]
"""A logged chunk message: its first seq, its last seq (equal for a single chunk), its JSON."""


class _Probe(msgspec.Struct):
    """Just enough of a transcript line to pick out chunks by seq."""

    type: str = ""
    seq: int = 0
    first_seq: int = 0
    last_seq: int = 0

    def seqs(self) -> tuple[int, int] | None:
        """The range of seqs this record holds, if it holds chunks."""
        if self.type == "agent.chunk":
            return self.seq, self.seq
        if self.type == "agent.chunks":
            return self.first_seq, self.last_seq
        return None


_probe = msgspec.json.Decoder(_Probe).decode
_decode_footer = msgspec.json.Decoder(Footer).decode


class ChunkHistory:
    """Finds any chunk of one session by seq, from memory or from its transcript."""

    def __init__(self, transcript: Path, *, ring_chunks: int, ring_bytes: int) -> None:
        self.transcript = transcript
        self._ring: collections.deque[Entry] = collections.deque()
        self._ring_chunks = 0
        self._ring_bytes = 0
        self._max_chunks = ring_chunks
        self._max_bytes = ring_bytes
        self._index_seqs: list[int] = []
        self._index_offsets: list[int] = []
        self.indexed = True
        """False for a session taken back from disk until its transcript has been scanned."""

    def record(self, entries: list[Entry], offset: int) -> None:
        """Remember chunk messages just appended, one line each, to the transcript at ``offset``."""
        for first, last, payload in entries:
            self.index_line(first, last, offset)
            offset += len(payload) + 1
            self._ring.append((first, last, payload))
            self._ring_chunks += last - first + 1
            self._ring_bytes += len(payload)
        while self._ring and (
            self._ring_chunks > self._max_chunks or self._ring_bytes > self._max_bytes
        ):
            first, last, payload = self._ring.popleft()
            self._ring_chunks -= last - first + 1
            self._ring_bytes -= len(payload)

    def index_line(self, first: int, last: int, offset: int) -> None:
        """Index a chunk record at ``offset`` if it crosses an index boundary."""
        if (
            not self._index_seqs
            or last >= self._index_seqs[-1] + INDEX_EVERY
            or offset >= self._index_offsets[-1] + INDEX_BYTES
        ):
            self._index_seqs.append(first)
            self._index_offsets.append(offset)

    def from_memory(self, from_seq: int, limit: int, max_bytes: int) -> list[bytes] | None:
        """About ``limit`` chunks from the message holding ``from_seq``, if the ring still
        holds it, else None (see :class:`Page` for ``max_bytes``)."""
        if not self._ring or from_seq < self._ring[0][0]:
            return None
        start = len(self._ring)
        while start > 0 and self._ring[start - 1][1] >= from_seq:
            start -= 1  # the reader is usually close behind: search from the newest
        page = Page(from_seq, limit, max_bytes)
        for i in range(start, len(self._ring)):
            if not page.add(*self._ring[i]):
                break
        return page.payloads

    def require_transcript(self) -> None:
        """Raise ``TranscriptGone`` if the transcript was deleted (blocking: a stat). An
        ended session's chunks are then refused even from memory: a purged session says
        so, whichever of its chunks is asked for."""
        require(self.transcript)

    def from_disk(self, from_seq: int, limit: int, max_bytes: int) -> list[bytes]:
        """Read about ``limit`` chunks from ``from_seq`` out of the transcript (blocking);
        see :class:`Page` for ``max_bytes``."""
        if not self.indexed:
            scan_transcript(self.transcript, self)
        at = bisect.bisect_right(self._index_seqs, from_seq) - 1
        offset = self._index_offsets[at] if at >= 0 else 0
        page = Page(from_seq, limit, max_bytes)
        with TranscriptFile(self.transcript) as f:
            f.seek(offset)
            for line in f:
                try:
                    seqs = _probe(line).seqs()
                except msgspec.DecodeError:
                    continue
                if (
                    seqs is not None
                    and seqs[1] >= from_seq
                    and not page.add(seqs[0], seqs[1], line.rstrip(b"\n"))
                ):
                    break
        return page.payloads


class Page:
    """One replay page being filled: chunk messages from ``from_seq`` on, until about
    ``limit`` chunks or until the next message would take it past ``max_bytes``.

    Always at least one message, so a reader moves on whatever the sizes; a message is
    at most ``max_line_bytes`` logged plus the rest of one read (``output.py`` cuts
    lines before they are escaped), so a page is bounded in bytes either way.
    """

    __slots__ = ("count", "from_seq", "limit", "max_bytes", "payloads", "size")

    def __init__(self, from_seq: int, limit: int, max_bytes: int) -> None:
        self.from_seq = from_seq
        self.limit = limit
        self.max_bytes = max_bytes
        self.payloads: list[bytes] = []
        self.count = 0
        self.size = 0

    def add(self, first: int, last: int, payload: bytes) -> bool:
        """Take one message unless the page is full; whether another may follow."""
        if self.payloads and self.size + len(payload) > self.max_bytes:
            return False
        self.payloads.append(payload)
        self.size += len(payload) + 1  # and the comma between messages in the reply
        self.count += last - max(first, self.from_seq) + 1
        return self.count < self.limit


@dataclass
class Scan:
    """What a transcript on disk says about its session."""

    last_seq: int = 0
    damaged_lines: int = 0
    ends_cleanly: bool = True
    footer: Footer | None = None
    """The footer, if the session ended before the daemon went down."""


def scan_transcript(path: Path, history: ChunkHistory) -> Scan:
    """Index an existing transcript and say how it ends."""
    history.indexed = True
    scan = Scan()
    offset = 0
    with TranscriptFile(path) as f:
        for line in f:
            scan.ends_cleanly = line.endswith(b"\n")
            try:
                probe = _probe(line)
            except msgspec.DecodeError:
                scan.damaged_lines += 1
            else:
                if (seqs := probe.seqs()) is not None:
                    history.index_line(seqs[0], seqs[1], offset)
                    scan.last_seq = max(scan.last_seq, seqs[1])
                elif probe.type == "footer":
                    scan.footer = _decode_footer(line)
            offset += len(line)
    return scan
