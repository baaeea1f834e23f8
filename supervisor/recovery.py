"""Taking sessions back after the daemon crashed (``kill -9``, a power cut).

Every session in the durable table is listed again. A session whose process survived and
is provably the same (pid and start time) is re-adopted; any other session that was live
becomes ``interrupted``, and every leftover process of it is killed, so nothing runs
unowned. Transcripts are reopened for appending, then parked (closed until the next write);
a torn last line is reported, never fatal.
The Session objects themselves are built by :class:`SessionFactory`, as new ones are.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import msgspec
import psutil
import structlog

from agentplex.protocol import Recovered, SessionStatus
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.factory import SessionFactory
from agentplex.supervisor.history import scan_transcript
from agentplex.supervisor.resources import start_time
from agentplex.supervisor.scanner import session_marker_of
from agentplex.supervisor.session import Session
from agentplex.supervisor.table import SessionRecord

log = structlog.get_logger(__name__)


@dataclass
class RecoveryReport:
    """What a restart found."""

    restored: int = 0
    interrupted: int = 0
    adopted: int = 0
    damaged_lines: int = 0
    leftovers_killed: int = 0


def restore_sessions(
    records: list[SessionRecord], backends: BackendRegistry, context: SessionContext
) -> tuple[list[Session], RecoveryReport]:
    """Rebuild a Session for each saved record; kill every process nobody owns any more."""
    report = RecoveryReport()
    factory = SessionFactory(context)
    sessions, orphaned = [], set()
    for record in records:
        session = factory.rebuild(record, backends.get(record.info.backend))
        if record.info.status.ended:
            session.restore(record, record.info.status)
        else:
            status = _take_back(session, record, report)
            if status is SessionStatus.INTERRUPTED:
                orphaned.add(session.id)
        sessions.append(session)
        report.restored += 1
    report.leftovers_killed = kill_leftovers(orphaned)
    log.info("sessions_recovered", **report.__dict__)
    return sessions, report


def _take_back(session: Session, record: SessionRecord, report: RecoveryReport) -> SessionStatus:
    """Reopen a live session's transcript and decide what it is now."""
    if not session.transcript.writable:
        report.interrupted += 1
        session.restore(record, SessionStatus.INTERRUPTED)
        return SessionStatus.INTERRUPTED
    scan = scan_transcript(session.transcript.path, session.chunks.history)
    record = _with_chunks(record, scan.last_seq)
    if scan.footer is not None:  # it ended just before the crash; the table lagged
        session.restore(record, scan.footer.status)
        session.transcript.close()
        return scan.footer.status
    if not scan.ends_cleanly:
        session.transcript.end_damaged_line()
    report.damaged_lines += scan.damaged_lines
    status = SessionStatus.INTERRUPTED
    if _same_process(record.info.pid, record.pid_started_at):
        status = record.info.status
        report.adopted += 1
    else:
        report.interrupted += 1
    session.restore(record, status)
    session.transcript.write(
        Recovered(
            ts=time.time(),
            previous=record.info.status,
            status=status,
            damaged_lines=scan.damaged_lines,
        )
    )
    if scan.damaged_lines:
        log.warning("transcript_damaged", session_id=session.id, lines=scan.damaged_lines)
    # An interrupted session writes again only if it is continued or ended, a re-adopted
    # one only its end (its output went with the old daemon's pipes): holding their
    # transcripts open would cost a descriptor each for nothing, and after a few crashes
    # a restarted daemon would come up at its limit.
    session.transcript.park()
    return status


def _with_chunks(record: SessionRecord, last_seq: int) -> SessionRecord:
    """The record with the chunk count the transcript proves (it may be ahead of the table)."""
    info = msgspec.structs.replace(record.info, chunks=max(last_seq, record.info.chunks))
    return msgspec.structs.replace(record, info=info)


def _same_process(pid: int | None, started_at: float | None) -> bool:
    # A zombie is dead (start_time says None): where init does not reap, it keeps its pid.
    return pid is not None and started_at is not None and start_time(pid) == started_at


def kill_leftovers(session_ids: set[str]) -> int:
    """SIGKILL every process on the machine that carries the marker of one of these sessions."""
    if not session_ids:
        return 0
    killed = 0
    for proc in psutil.process_iter():
        if session_marker_of(proc.pid) in session_ids:
            try:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            except psutil.NoSuchProcess:
                continue
    if killed:
        log.warning("leftover_processes_killed", count=killed)
    return killed
