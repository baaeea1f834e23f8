"""A session's chunk stream: lines become numbered chunks, logged, then published.

This is the hot path. Each pipe read becomes one batch: every chunk is encoded once,
the batch is appended to the transcript in one write, then each chunk is published
with the same bytes.
"""

from __future__ import annotations

import base64
import collections
import time
from dataclasses import dataclass

import anyio
import msgspec

from agentplex.plugins.api import ChunkData, Driver
from agentplex.protocol import ChunkBatch, ChunkKind, Stream, Usage, encode
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.history import PAGE_BYTES, ChunkHistory, Entry
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.output import Line
from agentplex.supervisor.transcript import Transcript
from agentplex.supervisor.usage import ThreadMark, UsageMeter
from agentplex.supervisor.usage import checked as checked_usage


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch of chunks means for the session's turn."""

    results: int = 0
    """How many turns the batch reported finished."""
    permission_request: str | None = None


class ChunkStream:
    """Numbers a session's chunks from 1 with no gaps; logs each before publishing it."""

    def __init__(
        self,
        session_id: str,
        transcript: Transcript,
        events: EventPublisher,
        history: ChunkHistory,
        metrics: Metrics,
        backend_id: str,
    ) -> None:
        self.session_id = session_id
        self.transcript = transcript
        self.events = events
        self.history = history
        self.metrics = metrics
        self.backend_id = backend_id
        self.seq = 0
        self.meter = UsageMeter()
        self.last_activity = time.time()
        """When the session last said or was told something (for the idle timeout)."""
        self.cli_session_id: str | None = None

    def publish_lines(
        self,
        lines: list[Line],
        stream: Stream,
        driver: Driver,
        turn: int,
        stderr_tail: collections.deque[str],
    ) -> BatchOutcome:
        """Turn one read's lines into chunks through ``driver``; log, then publish them."""
        if type(driver).parse is Driver.parse and self._publish_plain(lines, stream, turn):
            if stream is Stream.STDERR:
                tail = lines[-(stderr_tail.maxlen or len(lines)) :]
                stderr_tail.extend(line.decode() for line, _ in tail)
            return BatchOutcome()
        entries: list[Entry] = []
        results, permission = 0, None
        now = time.time()
        for raw, fragment in lines:
            try:
                text, b64 = raw.decode(), None
            except UnicodeDecodeError:
                text, b64 = raw.decode(errors="replace"), base64.b64encode(raw).decode()
            if stream is Stream.STDERR:
                stderr_tail.append(text)
            if fragment or b64 is not None:
                datas = [ChunkData(ChunkKind.RAW, text, partial=fragment)]
            else:
                datas = driver.parse(text, stream)
            for data in datas:
                entries.append(self._encode(data, stream, now, turn, b64))
                b64 = None
                results += data.kind is ChunkKind.RESULT
                if data.kind is ChunkKind.PERMISSION_REQUEST and data.request_id:
                    permission = data.request_id
        self._commit(entries)
        return BatchOutcome(results, permission)

    def _publish_plain(self, lines: list[Line], stream: Stream, turn: int) -> bool:
        """The fast path for plain lines (every line a ``text`` chunk): one batch message
        for the whole read. False if a line needs the careful path (a cut line, bad UTF-8)."""
        try:
            texts = [line.decode() for line, fragment in lines if not fragment]
        except UnicodeDecodeError:
            return False
        if len(texts) != len(lines):
            return False
        first, self.seq = self.seq + 1, self.seq + len(texts)
        batch = ChunkBatch(
            session_id=self.session_id,
            first_seq=first,
            last_seq=self.seq,
            stream=stream,
            kind=ChunkKind.TEXT,
            texts=texts,
            ts=time.time(),
            turn=turn,
        )
        self._commit([(first, self.seq, encode(batch))])
        return True

    def publish_one(self, data: ChunkData, turn: int) -> None:
        """Publish a chunk the daemon itself says (an error, a note about the turn)."""
        self._commit([self._encode(data, Stream.DAEMON, time.time(), turn, None)])

    def _commit(self, entries: list[Entry]) -> None:
        if entries:
            self.last_activity = time.time()
            offset = self.transcript.size
            payloads = [payload for _, _, payload in entries]
            self.transcript.write_lines(payloads)
            self.history.record(entries, offset)
            self.events.publish_chunks(self.session_id, payloads)
            self.metrics.chunks_published(
                self.backend_id, entries[-1][1] - entries[0][0] + 1, self.transcript.size - offset
            )

    async def replay(self, from_seq: int, limit: int, max_bytes: int = PAGE_BYTES) -> list[bytes]:
        """Chunk messages from the one holding ``from_seq`` on, about ``limit`` chunks and
        at most about ``max_bytes`` (see ``history.Page``): from memory, else from disk."""
        found = self.history.from_memory(from_seq, limit, max_bytes)
        if found is None:
            read = self.history.from_disk
            found = await anyio.to_thread.run_sync(read, from_seq, limit, max_bytes)
        return found

    @property
    def usage(self) -> Usage:
        """The session's totals: the sum of its turns' own figures."""
        return self.meter.total

    def restore(
        self, seq: int, usage: Usage, cli_session_id: str | None, thread: ThreadMark | None
    ) -> None:
        """Continue numbering after ``seq`` and counting usage from ``usage`` and the
        thread's last running figure (a session taken back after a daemon restart)."""
        self.seq, self.cli_session_id = seq, cli_session_id
        self.meter.total, self.meter.thread = usage, thread

    def _encode(
        self, data: ChunkData, stream: Stream, now: float, turn: int, b64: str | None
    ) -> Entry:
        self.seq += 1
        if data.cli_session_id:
            self.cli_session_id = data.cli_session_id
        usage = data.usage
        if usage is not None:  # the agent's figures: checked before they are counted or sent
            usage = checked_usage(usage, session_id=self.session_id, backend=self.backend_id)
            if data.kind is ChunkKind.RESULT:
                # a running total becomes the turn's own figures: what is logged, sent, summed
                usage = self.meter.turn_figures(usage, self.cli_session_id)
                self.meter.count(usage)
                self.metrics.turn_usage(self.backend_id, usage)
        chunk = msgspec.structs.replace(
            data,
            usage=usage,
            session_id=self.session_id,
            seq=self.seq,
            stream=stream,
            ts=now,
            turn=turn,
            b64=b64,
        )
        payload = encode(chunk)
        return self.seq, self.seq, payload

