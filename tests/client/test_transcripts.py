"""The transcript reader reads a transcript plain or compressed alike, and says when it is gone."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from agentplex import protocol as p
from agentplex.client.transcripts import (
    TranscriptDamage,
    read_chunks,
    read_records,
    transcript_file,
)
from agentplex.protocol.errors import TranscriptGone

CHUNKS = [p.Chunk(p.ChunkKind.TEXT, f"line {i}", session_id="s", seq=i) for i in range(1, 200)]


def _write(path: Path) -> bytes:
    data = b"".join(p.encode(chunk) + b"\n" for chunk in CHUNKS)
    path.write_bytes(data)
    return data


def test_a_compressed_transcript_reads_like_the_plain_one_it_replaced(tmp_path: Path) -> None:
    plain = tmp_path / "s-20240101T000000Z.jsonl"
    data = _write(plain)
    assert [c.text for c in read_chunks(plain)] == [c.text for c in CHUNKS]
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(data))
    plain.unlink()  # as retention does: the copy first, then the original goes
    assert transcript_file(plain) == packed
    assert [c.seq for c in read_chunks(plain, after_seq=150)] == list(range(151, 200))
    assert [c.seq for c in read_chunks(packed)] == [c.seq for c in CHUNKS]  # named itself


def test_a_deleted_transcript_raises_transcript_gone(tmp_path: Path) -> None:
    missing = tmp_path / "s-20240101T000000Z.jsonl"
    with pytest.raises(TranscriptGone, match="was deleted"):
        transcript_file(missing)
    with pytest.raises(TranscriptGone, match="was deleted"):
        list(read_chunks(missing))


def test_a_compressed_transcript_cut_short_gives_what_it_holds_and_reports_the_break(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "s-20240101T000000Z.jsonl"
    packed = plain.with_name(plain.name + ".gz")
    whole = gzip.compress(_write(plain))
    plain.unlink()
    packed.write_bytes(whole[: len(whole) * 2 // 3])
    damage: list[TranscriptDamage] = []
    records = list(read_records(plain, damage))
    assert 0 < len(records) < len(CHUNKS)
    assert len(damage) == 1 and "s-20240101T000000Z.jsonl.gz" in damage[0].problem
