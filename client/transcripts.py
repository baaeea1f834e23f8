"""Reading transcripts, plain or compressed by retention: every record, tolerating a torn
last line; a deleted one raises :class:`~agentplex.protocol.errors.TranscriptGone`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agentplex.protocol import Chunk, ChunkBatch, Record, expand, record_decoder
from agentplex.protocol.transcript_io import TranscriptFile, require


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
    and reported in ``damage`` instead of failing the whole read; so is the rest of a
    compressed transcript past a break. ``path`` is the transcript as the session's info
    names it: its compressed copy is read if retention made one.
    """
    number = 0
    with TranscriptFile(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield record_decoder.decode(line)
            except msgspec.DecodeError as exc:
                if damage is not None:
                    damage.append(TranscriptDamage(number, str(exc)))
        if f.broken is not None and damage is not None:
            damage.append(TranscriptDamage(number + 1, f.broken))


def read_chunks(path: Path | str, after_seq: int = 0) -> Iterator[Chunk]:
    """The chunks of a transcript whose seq is greater than ``after_seq`` (batches given
    out as their single chunks)."""
    for record in read_records(path):
        if isinstance(record, Chunk | ChunkBatch):
            for chunk in expand(record):
                if chunk.seq > after_seq:
                    yield chunk


def transcript_file(path: Path | str) -> Path:
    """The file holding the transcript ``path`` names now: itself or, once retention
    compressed it, its ``.gz`` copy; :class:`~agentplex.protocol.errors.TranscriptGone`
    if it was deleted."""
    return require(path)
