"""The durable session table: what a restarted daemon needs to take its sessions back.

Kept as a journal, ``sessions.jsonl``: one record per line, the last line of a session
wins. A state change appends one line (one ``write(2)``, no matter how many sessions
there are), so starting a session costs the same with 1 or 1,000 others; the journal is
compacted (rewritten with one line per session, atomically) when it has grown to several
times that. A daemon killed mid-append leaves at most one torn line, which loading skips:
the session's previous line still stands, and its transcript is the truth for everything
streamed since.

An append is whole lines or nothing: a write cut short (a full disk, the file size limit)
is truncated back to where the append began, and its changes stay pending until the disk
has room again, so no torn line is ever left for the next append to be glued onto. A line
that was glued onto a torn one anyway (a journal written before this rule) is repaired on
loading: the record that begins last on it is kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread
import msgspec
import structlog

from agentplex.protocol import PermissionPolicy, SessionInfo
from agentplex.supervisor.durable import sync_and_close, write_all
from agentplex.supervisor.usage import ThreadMark

log = structlog.get_logger(__name__)

JOURNAL_FILE = "sessions.jsonl"
COMPACT_SLACK = 64
"""Lines a journal may hold beyond twice its sessions before it is compacted."""
RETRY_INTERVAL = 2.0
"""Seconds between attempts to save changes a failed write left pending (a full disk)."""
_RECORD_START = b'{"info":'
"""How every encoded record begins (``info`` is its first field; inside a JSON string the
quotes would be escaped, so these bytes start a record wherever they appear)."""


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One session as the table keeps it: its info plus what is needed to continue it."""

    info: SessionInfo
    env: dict[str, str] = {}
    """The session's ``--env`` but for secrets (``credentials.looks_secret``), which are
    kept in the 0600 ``secrets/<id>.json`` instead, never here."""
    secret_env: list[str] = []
    """The names of those secrets, to take them from the daemon's environment should
    their file be gone."""
    command: list[str] = []
    instructions: str | None = None
    allowed_tools: list[str] = []
    permission_policy: PermissionPolicy = PermissionPolicy.ASK
    resume_id: str | None = None
    pid_started_at: float | None = None
    """The process's start time in seconds since boot (``resources.start_time``), to prove
    a pid is still ours."""
    thread_usage: ThreadMark | None = None
    """The last running usage figure of the CLI's thread, that the next one counts from."""


class Saved(Protocol):
    """What the table saves: a session (anything with an id that can describe itself)."""

    @property
    def id(self) -> str: ...

    def record(self) -> SessionRecord:
        """What the table keeps of it now."""
        ...


_decode_record = msgspec.json.Decoder(SessionRecord).decode
_encode = msgspec.json.Encoder().encode


class SessionTable:
    """Appends a session's record whenever its state changes; compacts now and then.

    Each session's latest record is kept encoded, so compaction writes what is known
    without re-encoding anything. Writes failing (a full disk) are logged, not fatal: the
    changes stay pending and the next change tries again.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_FILE
        self._encoded: dict[str, bytes] = {}
        self._changed: dict[str, Saved] = {}
        self._lines = 0
        self._torn = False
        self._fd: int | None = None
        self._dirty = anyio.Event()

    def load(self) -> list[SessionRecord]:
        """The saved sessions, in the order they were first saved; torn or unreadable lines
        are reported and skipped (a session's earlier line then stands)."""
        latest: dict[str, SessionRecord] = {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = [line for line in data.split(b"\n") if line]
        skipped = 0
        for line in lines:
            decoded = _decode_line(line)
            if decoded is None:
                skipped += 1
                continue
            record, line = decoded
            latest[record.info.id] = record
            self._encoded[record.info.id] = line
        if skipped:
            log.warning("session_table_lines_skipped", path=str(self.path), lines=skipped)
        self._lines = len(lines)
        self._torn = bool(data) and not data.endswith(b"\n")
        return list(latest.values())

    def add(self, records: list[SessionRecord]) -> None:
        """Take in records found elsewhere (sessions whose transcripts outlived their lines
        in the journal) and append them at once; if that fails, the next start finds them
        again."""
        lines = [self._encoded.setdefault(r.info.id, _encode(r)) for r in records]
        if not lines:
            return
        try:
            self._append(lines)
        except OSError as exc:
            log.error("session_table_not_saved", path=str(self.path), error=str(exc))

    def changed(self, session: Saved) -> None:
        """Note that ``session`` must be saved soon."""
        self._changed[session.id] = session
        self._dirty.set()

    def saved_ids(self) -> set[str]:
        """Every session the table records, whether or not the daemon still holds it."""
        return self._encoded.keys() | self._changed.keys()

    def saved(self, session_id: str) -> SessionRecord | None:
        """A session's latest record (with a change not yet written), if the table has one."""
        pending = self._changed.get(session_id)
        if pending is not None:
            return pending.record()
        line = self._encoded.get(session_id)
        return None if line is None else _decode_record(line)

    def save_now(self, session: Saved) -> None:
        """Append at once (a session just created must survive a daemon crash a moment
        later), without waiting for the disk: the page cache outlives the daemon, and the
        coalesced save that follows makes it durable."""
        self.changed(session)
        self.save(durable=False)

    def save(self, *, durable: bool = True) -> None:
        """Append every pending change; compact the journal when it has grown too long."""
        pending = list(self._changed.values())
        self._changed.clear()
        lines = [self._encode(session) for session in pending]
        try:
            if self._needs_compaction(len(lines)):
                self._compact()
            elif lines:
                self._append(lines)
            if durable and self._fd is not None:
                os.fsync(self._fd)
        except OSError as exc:
            log.error("session_table_not_saved", path=str(self.path), error=str(exc))
            for session in pending:
                self._changed.setdefault(session.id, session)

    def _encode(self, session: Saved) -> bytes:
        encoded = self._encoded[session.id] = _encode(session.record())
        return encoded

    def _needs_compaction(self, adding: int) -> bool:
        return self._lines + adding > 2 * len(self._encoded) + COMPACT_SLACK

    @property
    def pending(self) -> bool:
        """Changes are waiting to be saved (a write failed, or none was tried yet)."""
        return bool(self._changed)

    def _append(self, lines: list[bytes]) -> None:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o600)
        data = b"".join(line + b"\n" for line in lines)
        if self._torn:
            data = b"\n" + data
        start = os.fstat(self._fd).st_size  # O_APPEND: where this write lands
        try:
            write_all(self._fd, data)
        except OSError:
            self._truncate_back(self._fd, start)
            raise
        self._torn = False
        self._lines += len(lines)

    def _truncate_back(self, fd: int, offset: int) -> None:
        """Undo a partial append, so the journal ends where it ended before."""
        try:
            os.ftruncate(fd, offset)
        except OSError as exc:
            # The part stays: the next append starts on a line of its own.
            log.error("session_table_not_truncated", path=str(self.path), error=str(exc))
            self._torn = True

    def _compact(self) -> None:
        """Rewrite the journal with one line per session (write, fsync, rename)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(b"".join(line + b"\n" for line in self._encoded.values()))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self.close()
        self._lines = len(self._encoded)
        self._torn = False

    def close(self) -> None:
        """Close the journal (the next append reopens it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def run(self) -> None:
        """Save after each burst of changes, fsyncing in a worker thread (a slow disk must
        not stall every session's output), until cancelled; then once more."""
        try:
            while True:
                # After a failed write (a full disk), try again now and then: the table
                # catches up once there is room, even if nothing changes meanwhile.
                with anyio.move_on_after(RETRY_INTERVAL if self.pending else math.inf):
                    await self._dirty.wait()
                self._dirty = anyio.Event()
                self.save(durable=False)
                if self._fd is not None:
                    # A duplicate: a compaction may close and reopen the journal meanwhile.
                    await anyio.to_thread.run_sync(sync_and_close, os.dup(self._fd), self.path)
        finally:
            self.save()
            self.close()


def _decode_line(line: bytes) -> tuple[SessionRecord, bytes] | None:
    """The record on a journal line and its bytes, or None for a line that holds none.

    A line is either one record or (a journal written before appends were whole-or-nothing)
    a torn record with a whole one glued after it: then the last record on it is kept.
    """
    try:
        return _decode_record(line), line
    except msgspec.DecodeError:
        pass
    start = line.rfind(_RECORD_START, 1)
    if start < 0:
        return None
    try:
        return _decode_record(line[start:]), line[start:]
    except msgspec.DecodeError:
        return None
