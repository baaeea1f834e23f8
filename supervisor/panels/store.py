"""A panel on disk: ``<state>/panels/<panel_id>/``, in the layout of the design seed.

- ``panel_config.json``: the :class:`PanelConfig` it was created with (written once);
- ``session_metadata.json``: where it stands (:class:`PanelMetadata`: status, round, turn,
  the turns in flight, the stop reason), rewritten atomically after every change;
- ``panel_messages.jsonl``: one :class:`PanelMessage` per line, appended, never rewritten;
- ``panel_reactions.jsonl``: one :class:`ReactionRecord` per line (a reaction changes a
  message; appending it here keeps the message log free of a second copy of any id);
- ``participants/<name>.json``: each member's session id and transcript;
- ``insights/insights.jsonl``, ``insights/decision_history.json``,
  ``insights/consensus_tracking.json``, ``analytics/final_analytics.json``.

Every file is appended to (whole lines, one ``write`` each) or replaced atomically (a temp
file, rename, fsync of the file and the directory): a daemon killed at any point leaves each
one either as it was or as it became, and :meth:`PanelStore.load` reads a panel back from
them. Given the daemon's :class:`Flusher`, the write and the rename happen at once (so a
crash of the daemon loses nothing) and the ``fsync``s in its worker thread, off the event
loop: a slow disk stalls no panel and no session.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio.to_thread
import msgspec
import structlog

from agentplex.protocol.panels import (
    Decision,
    Insight,
    PanelConfig,
    PanelMessage,
    PanelStatus,
    Reaction,
    StopReason,
)
from agentplex.supervisor.dirs import prepare_private_dir
from agentplex.supervisor.durable import Flusher, write_all

log = structlog.get_logger(__name__)

CONFIG: Final = "panel_config.json"
METADATA: Final = "session_metadata.json"
MESSAGES: Final = "panel_messages.jsonl"
REACTIONS: Final = "panel_reactions.jsonl"
INSIGHTS: Final = "insights/insights.jsonl"
DECISIONS: Final = "insights/decision_history.json"
CONSENSUS: Final = "insights/consensus_tracking.json"
FINAL_ANALYTICS: Final = "analytics/final_analytics.json"

T = TypeVar("T")

_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")


class PendingTurn(msgspec.Struct, frozen=True, kw_only=True):
    """A turn handed to a member and not yet answered (what a restart asks again)."""

    participant: str
    turn: int
    round: int
    ts: float


class PanelMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Where a panel stands (``session_metadata.json``)."""

    id: str
    status: PanelStatus
    created_at: float
    round: int = 0
    turn: int = 0
    pending: PendingTurn | None = None
    in_flight: list[PendingTurn] = []
    """The turns of a parallel round (simultaneous / review) handed out and not answered
    yet, each dropped as its reply is recorded: what a restart records as interrupted."""
    stop_reason: StopReason | None = None
    ended_at: float | None = None


class ParticipantRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One member's ``participants/<name>.json``."""

    name: str
    session_id: str | None = None
    transcript: str | None = None
    backend: str | None = None
    active: bool = True
    left_reason: str | None = None


class ReactionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``panel_reactions.jsonl``."""

    message_id: str
    reaction: Reaction


class LoadedPanel(msgspec.Struct, kw_only=True):
    """Everything :meth:`PanelStore.load` reads back of one panel."""

    config: PanelConfig
    metadata: PanelMetadata
    messages: list[PanelMessage]
    participants: dict[str, ParticipantRecord]
    decisions: list[Decision]


class PanelStoreError(Exception):
    """A panel's files could not be read back (missing or damaged)."""


def write_atomic(path: Path, data: bytes, flusher: Flusher | None = None) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new, never half.
    With ``flusher`` the file and its directory are synced in its thread, after the rename
    (ext4 and XFS write a replacing file's data before the rename commits); else here,
    the data before the rename."""
    sync_replaced(flusher, path, replace_file(path, data, synced=flusher is None))


def replace_file(path: Path, data: bytes, synced: bool) -> tuple[int, int]:
    """The write and rename of :func:`write_atomic` (the data synced first if ``synced``),
    safe in a worker thread; the file's and its directory's descriptors, still open."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        if synced:
            os.fsync(fd)
        os.replace(temp, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def sync_replaced(flusher: Flusher | None, path: Path, fds: tuple[int, int]) -> None:
    """Sync and close what :func:`replace_file` left open (on the event loop: the Flusher's
    queue is the loop's)."""
    fd, dir_fd = fds
    _sync_later(flusher, fd, path)
    _sync_later(flusher, dir_fd, path.parent)  # the rename itself survives a power cut


def append_line(path: Path, data: bytes, flusher: Flusher | None = None) -> None:
    """Append one whole JSON line with one ``write`` (O_APPEND: never interleaved); with
    ``flusher``, synced in its thread."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data + b"\n")
    except BaseException:
        os.close(fd)
        raise
    if flusher is None:
        os.close(fd)
    else:
        flusher.sync_and_close(fd, path)


def _sync_later(flusher: Flusher | None, fd: int, path: Path) -> None:
    if flusher is not None:
        flusher.sync_and_close(fd, path)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def participant_file(name: str) -> str:
    """The file name of a member's record (its name made safe for a path)."""
    return f"participants/{_SAFE_NAME.sub('_', name)}.json"


class PanelStore:
    """The panels under ``<state>/panels``; one directory each."""

    def __init__(self, root: Path, flusher: Flusher | None = None) -> None:
        self.root = root
        self._flusher = flusher

    def dir(self, panel_id: str) -> Path:
        return self.root / panel_id

    def create(self, config: PanelConfig, metadata: PanelMetadata) -> Path:
        """Make a new panel's directory and its first files."""
        prepare_private_dir(self.root)
        path = self.dir(metadata.id)
        path.mkdir(mode=0o700)
        for sub in ("participants", "insights", "analytics"):
            (path / sub).mkdir(mode=0o700)
        write_atomic(path / CONFIG, msgspec.json.encode(config), self._flusher)
        self.save_metadata(metadata)
        return path

    def save_metadata(self, metadata: PanelMetadata) -> None:
        write_atomic(self.dir(metadata.id) / METADATA, msgspec.json.encode(metadata), self._flusher)

    async def save_metadata_off_loop(self, metadata: PanelMetadata) -> None:
        """:meth:`save_metadata` with the write and rename in a worker thread: creating and
        renaming a file waits for the journal while the Flusher syncs (a millisecond and
        more on a busy disk), which on the loop every panel and session would wait out.
        Not cancellable midway: once begun, the file is replaced and its syncs queued."""
        path = self.dir(metadata.id) / METADATA
        data = msgspec.json.encode(metadata)
        fds = await anyio.to_thread.run_sync(replace_file, path, data, self._flusher is None)
        sync_replaced(self._flusher, path, fds)

    def save_participant(self, panel_id: str, record: ParticipantRecord) -> None:
        path = self.dir(panel_id) / participant_file(record.name)
        write_atomic(path, msgspec.json.encode(record), self._flusher)

    def append_message(self, message: PanelMessage) -> None:
        append_line(
            self.dir(message.panel_id) / MESSAGES, msgspec.json.encode(message), self._flusher
        )

    def append_reaction(self, panel_id: str, record: ReactionRecord) -> None:
        append_line(self.dir(panel_id) / REACTIONS, msgspec.json.encode(record), self._flusher)

    def append_insight(self, insight: Insight) -> None:
        append_line(
            self.dir(insight.panel_id) / INSIGHTS, msgspec.json.encode(insight), self._flusher
        )

    def save_decisions(self, panel_id: str, decisions: list[Decision]) -> None:
        write_atomic(self.dir(panel_id) / DECISIONS, msgspec.json.encode(decisions), self._flusher)

    def save_json(self, panel_id: str, name: str, value: Any) -> None:
        """Replace one of the panel's JSON files (``CONSENSUS``, ``FINAL_ANALYTICS``)."""
        write_atomic(self.dir(panel_id) / name, msgspec.json.encode(value), self._flusher)

    def ids(self) -> list[str]:
        """Every panel directory that holds a config."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG).is_file())

    def load(self, panel_id: str) -> LoadedPanel:
        """Read a panel back; :class:`PanelStoreError` if its files cannot be read."""
        path = self.dir(panel_id)
        try:
            config = msgspec.json.decode((path / CONFIG).read_bytes(), type=PanelConfig)
            metadata = msgspec.json.decode((path / METADATA).read_bytes(), type=PanelMetadata)
            decisions_file = path / DECISIONS
            decisions = (
                msgspec.json.decode(decisions_file.read_bytes(), type=list[Decision])
                if decisions_file.is_file()
                else []
            )
        except (OSError, msgspec.DecodeError) as exc:
            raise PanelStoreError(f"panel {panel_id}: {exc}") from exc
        participants = {record.name: record for record in self._participants(path / "participants")}
        messages = merge_reactions(
            list(read_lines(path / MESSAGES, PanelMessage)),
            read_lines(path / REACTIONS, ReactionRecord),
        )
        return LoadedPanel(
            config=config,
            metadata=metadata,
            messages=messages,
            participants=participants,
            decisions=decisions,
        )

    def _participants(self, path: Path) -> Iterator[ParticipantRecord]:
        for file in sorted(path.glob("*.json")):
            try:
                yield msgspec.json.decode(file.read_bytes(), type=ParticipantRecord)
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("panel_participant_unreadable", path=str(file), error=str(exc))


def read_lines(path: Path, kind: type[T]) -> Iterator[T]:
    """The records of a JSONL file; a damaged line (a crash mid-write) is skipped."""
    if not path.is_file():
        return
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError:
                log.warning("panel_line_damaged", path=str(path))


def merge_reactions(
    messages: list[PanelMessage], reactions: Iterator[ReactionRecord]
) -> list[PanelMessage]:
    """The messages with their reactions in; a message id seen twice is kept once."""
    by_id: dict[str, PanelMessage] = {}
    for message in messages:
        by_id.setdefault(message.id, message)
    for record in reactions:
        target = by_id.get(record.message_id)
        if target is not None:
            reactions_now = [*target.reactions, record.reaction]
            by_id[target.id] = msgspec.structs.replace(target, reactions=reactions_now)
    return list(by_id.values())
