"""Sessions the table lost but whose transcripts exist: rebuilt from what the transcript says.

The session table is how a restarted daemon finds its sessions; a transcript is what a
session wrote. If the two disagree (a journal damaged by an old daemon that let a line be
torn, a journal removed by hand), the transcript wins: a session that has one is never
dropped from ``list``, and one that was live is taken back (or marked ``interrupted``, its
leftover processes killed) like any other. Only transcripts whose session id the table does
not know are read, two lines each (the header and the last), so a restart with thousands
of transcripts stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog

from agentplex.protocol import Footer, Header, SessionInfo, SessionStatus, Usage, record_decoder
from agentplex.supervisor.table import SessionRecord

log = structlog.get_logger(__name__)
_R = TypeVar("_R", Header, Footer)

TAIL_BYTES = 64 << 10
"""How much of a transcript's end is read to find its footer (a footer is far smaller)."""


def lost_records(known: Iterable[SessionRecord], sessions_dir: Path) -> list[SessionRecord]:
    """A record for every transcript under ``sessions_dir`` whose session is not ``known``,
    oldest first."""
    known_ids = {record.info.id for record in known}
    found: list[SessionRecord] = []
    for path in _unknown_transcripts(sessions_dir, known_ids):
        record = record_from_transcript(path)
        if record is not None and record.info.id not in known_ids:
            known_ids.add(record.info.id)
            found.append(record)
    if found:
        log.warning(
            "sessions_found_by_transcript",
            sessions=[record.info.id for record in found],
            reason="missing from the session table",
        )
    return found


def _unknown_transcripts(sessions_dir: Path, known_ids: set[str]) -> list[Path]:
    """Transcripts of sessions not in ``known_ids``, oldest first."""
    paths = []
    for path in sessions_dir.glob("*/*.jsonl"):
        # Named "<session-id>-<UTC stamp>.jsonl": the id is known without opening it.
        if path.name.rsplit("-", 1)[0] in known_ids:
            continue
        try:
            paths.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile (retention)
            continue
    return [path for _, path in sorted(paths)]


def record_from_transcript(path: Path) -> SessionRecord | None:
    """What the table would have kept of the session ``path`` is the transcript of: live
    (recovery then decides what it is now) unless it ends with a footer."""
    try:
        header, footer = _header_and_footer(path)
    except OSError as exc:
        log.warning("transcript_unreadable", path=str(path), error=exc.strerror)
        return None
    if header is None:
        return None
    info = SessionInfo(
        id=header.session_id,
        backend=header.backend,
        persona=header.persona,
        tag=header.tag,
        cwd=header.cwd,
        status=footer.status if footer else SessionStatus.RUNNING,
        created_at=header.started_at,
        pid=None,
        cli_session_id=None,
        turns=footer.turns if footer else 0,
        chunks=footer.chunks if footer else 0,
        transcript=str(path),
        ended_reason=footer.reason if footer else None,
        usage=footer.usage if footer else Usage(),
    )
    return SessionRecord(info=info, command=list(header.argv))


def _header_and_footer(path: Path) -> tuple[Header | None, Footer | None]:
    with open(path, "rb") as f:
        header = _decode(f.readline(), Header)
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - TAIL_BYTES))
        lines = f.read().rstrip(b"\n").rsplit(b"\n", 1)
    return header, _decode(lines[-1], Footer)


def _decode(line: bytes, kind: type[_R]) -> _R | None:
    try:
        record = record_decoder.decode(line.rstrip(b"\n"))
    except msgspec.DecodeError:
        return None
    return record if isinstance(record, kind) else None
