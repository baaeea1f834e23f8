"""Reading transcripts: every record, tolerating a torn last line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agentplex.protocol import Chunk, ChunkBatch, Record, expand, record_decoder


@dataclass
class TranscriptDamage:
    """A line that could not be read (``line`` counts from 1)."""

    line: int
    problem: str


def read_records(
    path: Path | str, damage: list[TranscriptDamage] | None = None
) -> Iterator[Record]:
    """Yield each record of a transcript.

    A line that cannot be decoded (typically the last one, torn by a crash) is skipped
    and reported in ``damage`` instead of failing the whole read.
    """
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield record_decoder.decode(line)
            except msgspec.DecodeError as exc:
                if damage is not None:
                    damage.append(TranscriptDamage(number, str(exc)))


def read_chunks(path: Path | str, after_seq: int = 0) -> Iterator[Chunk]:
    """The chunks of a transcript whose seq is greater than ``after_seq`` (batches given
    out as their single chunks)."""
    for record in read_records(path):
        if isinstance(record, Chunk | ChunkBatch):
            for chunk in expand(record):
                if chunk.seq > after_seq:
                    yield chunk
