"""A session's chunk history for replay: the recent tail in memory, the rest on disk.

The ring keeps the newest chunks (bounded by count and bytes) so a subscriber that fell
a little behind catches up without touching the disk. Older chunks come from the
transcript, found through a sparse seq -> file offset index, so paging through a long
session reads each byte once.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agentplex.client.protocol import Footer

INDEX_EVERY = 256
"""Index one chunk in this many (its seq and its line's offset in the transcript)."""


class _Probe(msgspec.Struct):
    """Just enough of a transcript line to pick out chunks by seq."""

    type: str = ""
    seq: int = 0


_probe = msgspec.json.Decoder(_Probe).decode
_decode_footer = msgspec.json.Decoder(Footer).decode


class ChunkHistory:
    """Finds any chunk of one session by seq, from memory or from its transcript."""

    def __init__(self, transcript: Path, *, ring_chunks: int, ring_bytes: int) -> None:
        self.transcript = transcript
        self._ring: collections.deque[tuple[int, bytes]] = collections.deque()
        self._ring_bytes = 0
        self._max_chunks = ring_chunks
        self._max_bytes = ring_bytes
        self._index_seqs: list[int] = []
        self._index_offsets: list[int] = []
        self.indexed = True
        """False for a session taken back from disk until its transcript has been scanned."""

    def record(self, first_seq: int, payloads: list[bytes], offset: int) -> None:
        """Remember a batch just appended to the transcript at ``offset``."""
        seq = first_seq
        for payload in payloads:
            if seq % INDEX_EVERY == 1 or not self._index_seqs:
                self._index_seqs.append(seq)
                self._index_offsets.append(offset)
            offset += len(payload) + 1
            self._ring.append((seq, payload))
            self._ring_bytes += len(payload)
            seq += 1
        while self._ring and (
            len(self._ring) > self._max_chunks or self._ring_bytes > self._max_bytes
        ):
            self._ring_bytes -= len(self._ring.popleft()[1])

    def index_line(self, seq: int, offset: int) -> None:
        """Index a chunk found while scanning an existing transcript (after a restart)."""
        if seq % INDEX_EVERY == 1 or not self._index_seqs:
            self._index_seqs.append(seq)
            self._index_offsets.append(offset)

    def from_memory(self, from_seq: int, limit: int) -> list[bytes] | None:
        """The chunks from ``from_seq`` if the ring still holds it, else None."""
        if not self._ring or from_seq < self._ring[0][0]:
            return None
        start = from_seq - self._ring[0][0]
        return [payload for _, payload in list(self._ring)[start : start + limit]]

    def from_disk(self, from_seq: int, limit: int) -> list[bytes]:
        """Read chunks from ``from_seq`` out of the transcript (blocking: run in a thread)."""
        if not self.indexed:
            scan_transcript(self.transcript, self)
        at = bisect.bisect_right(self._index_seqs, from_seq) - 1
        offset = self._index_offsets[at] if at >= 0 else 0
        found: list[bytes] = []
        with open(self.transcript, "rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    probe = _probe(line)
                except msgspec.DecodeError:
                    continue
                if probe.type == "agent.chunk" and probe.seq >= from_seq:
                    found.append(line.rstrip(b"\n"))
                    if len(found) >= limit:
                        break
        return found


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
    with open(path, "rb") as f:
        for line in f:
            scan.ends_cleanly = line.endswith(b"\n")
            try:
                probe = _probe(line)
            except msgspec.DecodeError:
                scan.damaged_lines += 1
            else:
                if probe.type == "agent.chunk":
                    history.index_line(probe.seq, offset)
                    scan.last_seq = max(scan.last_seq, probe.seq)
                elif probe.type == "footer":
                    scan.footer = _decode_footer(line)
            offset += len(line)
    return scan
