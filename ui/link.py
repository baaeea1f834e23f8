"""The dashboard's one connection to the daemon, shared by every open page.

One ``AsyncClient`` and one subscription to every event, fanned out to each page's
:class:`~agentplex.ui.outbox.Outbox`: each event is relayed as the daemon published it
(undecoded, framed once however many tabs are open); the daemon sees one subscriber, not one
per tab; and
whether the daemon is up is decided in one place. Pages' requests share the client's
DEALER (requests run concurrently, each answered by its own id).

The link notices the daemon going away (its lock released, or silence and no ``pong``)
and coming back (the lock held again, or a heartbeat from a new pid), and tells every page
``{"op":"daemon","up":...}``. After a loss it subscribes afresh and announces ``up:true``
only once the new subscription is live, so a page that replays on ``up:true`` misses
nothing published after its replay.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

import anyio
import msgspec
from anyio.abc import TaskStatus

from agentplex import protocol as p
from agentplex.client import AsyncClient, Subscription
from agentplex.client.runtime_dir import check_daemon_running
from agentplex.protocol.errors import (
    DaemonNotRunning,
    DaemonUnavailable,
    RequestTimeout,
    UnsafeDirectory,
)
from agentplex.protocol.paths import RuntimePaths
from agentplex.ui import page_protocol
from agentplex.ui.outbox import CLOSE_GOING_AWAY, Outbox

RETRY: Final = 0.25
"""Seconds between looks for a daemon that is not there (yet, or again)."""
LOCK_CHECK: Final = 0.25
"""Seconds between checks that the daemon still holds its lock (a cheap local flock)."""
SILENCE: Final = 8.0
"""Seconds without any event (heartbeats come every 2 s) after which the daemon is pinged."""
PING_TIMEOUT: Final = 4.0
READY_TIMEOUT: Final = 10.0
REQUEST_TIMEOUT: Final = 10.0
"""Default seconds a page's request may take (``terminate`` gets its grace on top)."""

_ANY_REPLY: Final = cast(Any, p.Reply)  # the union of every reply: the page takes any
HEARTBEAT_TOPIC: Final = p.topic_of(p.Heartbeat(pid=0, ts=0.0, sessions=0))

log = logging.getLogger("agentplex.ui")


class DaemonLink:
    """The shared client, the daemon's liveness, and the fan-out of its events."""

    def __init__(self, runtime_dir: Path) -> None:
        self.paths = RuntimePaths(runtime_dir)
        self.up = False
        self._client: AsyncClient | None = None
        self._outboxes: set[Outbox] = set()
        self._last_heard = 0.0
        self._warned: str | None = None

    # ------------------------------------------------------------------ pages

    def attach(self, outbox: Outbox) -> None:
        """Send ``outbox`` every frame from now on, starting with hello and the daemon state."""
        outbox.put(page_protocol.hello())
        outbox.put(page_protocol.daemon_state(self.up))
        self._outboxes.add(outbox)

    def detach(self, outbox: Outbox) -> None:
        self._outboxes.discard(outbox)

    def close_all(self) -> None:
        """The server is stopping: every page's socket is closed (the page reconnects)."""
        for outbox in self._outboxes:
            outbox.close(CLOSE_GOING_AWAY, "the dashboard server is stopping")

    def _broadcast(self, frame: str) -> None:
        for outbox in list(self._outboxes):
            outbox.put(frame)  # never blocks: a page too slow is closed, not waited for

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self._broadcast(page_protocol.daemon_state(up))

    # ------------------------------------------------------------------ requests

    async def request(self, request: p.Request) -> p.Reply:
        """The daemon's reply to a page's request (an error reply raises its exception)."""
        client = self._client
        if client is None or not self.up:
            raise DaemonUnavailable(f"no daemon is reachable at {self.paths.runtime_dir} now")
        timeout = REQUEST_TIMEOUT
        if isinstance(request, p.Terminate):
            grace = request.grace if request.grace is not None else 5.0
            timeout += grace + 10.0 if math.isfinite(grace) else 0.0
        reply: p.Reply = await client.request(request, _ANY_REPLY, timeout)
        return reply

    # ------------------------------------------------------------------ the daemon

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the link: wait for a daemon, follow it, notice losses; never returns."""
        task_status.started()
        while True:
            await self._wait_running()
            # Gone again before the client connected: wait for the next one. (Once
            # connected, the client rides out restarts: ZeroMQ reconnects its sockets.)
            with contextlib.suppress(DaemonNotRunning, UnsafeDirectory):
                async with AsyncClient(self.paths.runtime_dir, timeout=REQUEST_TIMEOUT) as client:
                    await self._serve(client)

    async def _serve(self, client: AsyncClient) -> None:
        self._client = client
        try:
            while True:
                await self._follow(client)
                self._set_up(False)
                await self._wait_running()
        finally:
            self._client = None

    async def _wait_running(self) -> None:
        """Return once a daemon holds the runtime dir's lock. Polled: another process's
        flock gives no event, and a look costs one open and one flock."""
        while True:
            if self._running():
                return
            await anyio.sleep(RETRY)

    def _running(self) -> bool:
        try:
            check_daemon_running(self.paths)
        except DaemonNotRunning:
            return False
        except UnsafeDirectory as exc:  # say it once: the dashboard keeps waiting for a fix
            if self._warned != exc.message:
                self._warned = exc.message
                log.warning("agentplex ui: %s", exc.message)
            return False
        return True

    async def _follow(self, client: AsyncClient) -> None:
        """Forward every event while this daemon lives; return when it is lost."""
        try:
            pid = (await client.ping(timeout=PING_TIMEOUT)).pid
            async with client.subscribe(
                ready_timeout=READY_TIMEOUT, expand_batches=False
            ) as events:
                self._last_heard = anyio.current_time()
                self._set_up(True)
                async with anyio.create_task_group() as tg:
                    lost = tg.cancel_scope.cancel
                    tg.start_soon(self._watch, client, lost)
                    await self._relay(events, pid)
                    lost()
        except (RequestTimeout, DaemonNotRunning, TimeoutError):
            return  # it went away while we were connecting: the caller waits for it again

    async def _relay(self, events: Subscription, pid: int) -> None:
        """Forward events as they came, undecoded (only the heartbeat is read, for its pid),
        until one says that another daemon now publishes."""
        while True:
            topic, payload = await events.next_raw()
            self._last_heard = anyio.current_time()
            if topic == HEARTBEAT_TOPIC and _heartbeat_pid(payload) not in (pid, None):
                return  # restarted between two lock checks: resubscribe
            self._broadcast(page_protocol.event_frame(topic, payload))

    async def _watch(self, client: AsyncClient, lost: Callable[[], None]) -> None:
        """Call ``lost`` once the daemon has released its lock, or stays silent and does
        not answer a ping."""
        while self._running():
            await anyio.sleep(LOCK_CHECK)
            if anyio.current_time() - self._last_heard > SILENCE:
                try:
                    await client.ping(timeout=PING_TIMEOUT)
                except RequestTimeout:
                    break
                self._last_heard = anyio.current_time()
        lost()


def _heartbeat_pid(payload: bytes) -> int | None:
    """The pid a heartbeat names (None if it does not decode as one: not a reason to
    resubscribe)."""
    try:
        event = p.event_decoder.decode(payload)
    except msgspec.DecodeError:
        return None
    return event.pid if isinstance(event, p.Heartbeat) else None
