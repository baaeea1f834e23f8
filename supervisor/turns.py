"""A session's turns: how many began, when each still running began (for the turn-duration
metric), the messages queued for the next one, and the conversation id it resumes."""

from __future__ import annotations

import collections
import time

from agentplex.protocol import MessageIn
from agentplex.protocol.errors import QueueFull
from agentplex.supervisor.agent_process import AgentProcess
from agentplex.supervisor.metrics import Metrics


class Turns:
    """The turn ledger of one session (its process and status are the session's)."""

    def __init__(self, session_id: str, backend_id: str, metrics: Metrics, limit: int) -> None:
        self.count = 0
        self.queued: collections.deque[str] = collections.deque()
        """Messages sent while a turn ran, each the prompt of a later turn."""
        self.resume_id: str | None = None
        """The CLI's conversation id to continue with: from the last turn that completed
        (or that its driver says was saved); a turn killed early may leave nothing."""
        self._started: collections.deque[float] = collections.deque()
        """When each turn still running began (monotonic)."""
        self._session_id = session_id
        self._backend_id = backend_id
        self._metrics = metrics
        self._limit = limit

    def begin(self, message: str) -> MessageIn:
        """Count a turn that ``message`` begins; returns the record that logs it."""
        self._started.append(time.monotonic())
        self.count += 1
        return MessageIn(text=message, ts=time.time(), turn=self.count)

    def queue(self, message: str) -> int:
        """Keep ``message`` for the turn after the running one; returns the queue length."""
        if len(self.queued) >= self._limit:
            raise QueueFull(
                f"session {self._session_id} already holds {len(self.queued)} queued messages"
            )
        self.queued.append(message)
        return len(self.queued)

    def finished(self, count: int) -> None:
        """``count`` of the running turns reported their end (their durations are measured)."""
        now = time.monotonic()
        for _ in range(min(count, len(self._started))):
            self._metrics.turn_finished(self._backend_id, now - self._started.popleft())

    def ended(self, process: AgentProcess, cli_session_id: str | None, *, failed: bool) -> bool:
        """A turn's process ended: the turn is finished, and the next one resumes from
        where this one left the conversation. True if that changed (worth saving)."""
        self.finished(1)
        if not failed or (process.interrupted and process.finished):
            self.resume_id = cli_session_id
            return True
        saved = process.driver.resumable_id()
        if saved is None:
            return False
        self.resume_id = saved
        return True
