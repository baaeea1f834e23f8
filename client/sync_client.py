"""Client: the blocking face of AsyncClient, run on an event loop in a daemon thread.

Every method is AsyncClient's own, called through an anyio blocking portal, so the
protocol logic exists once. Neither an interrupted call nor a forgotten client may keep
the process alive: a Ctrl-C in a call cancels the task the call started, and the loop's
thread is a daemon thread that ``close()``, garbage collection and interpreter exit all
wind down, waiting a bounded time.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from agentplex import protocol as p
from agentplex.client.async_client import DEFAULT_TIMEOUT, AsyncClient
from agentplex.client.subscription import Subscription

P = ParamSpec("P")
R = TypeVar("R")

CANCEL_TIMEOUT = 0.25
"""How long an interrupted call waits for the task it started to unwind (close the
subscription it holds) before the interruption goes on."""
CLOSE_TIMEOUT = 1.0
"""How long ``close()`` waits for the loop to cancel what runs and close its sockets; past
that the thread is left to die with the process, so a daemon that stopped answering
cannot hold up an exit."""


class _Loop:
    """An AsyncClient entered on an anyio loop in a daemon thread, and a portal into it.

    Not anyio's ``start_blocking_portal``: its thread is a ThreadPoolExecutor worker, which
    the interpreter joins at exit, so a client nobody closed kept its script alive forever,
    and its exit waits for every call still running, however long.
    """

    def __init__(self, client: AsyncClient) -> None:
        ready: Future[BlockingPortal] = Future()
        self._thread = threading.Thread(
            target=anyio.run, args=(self._serve, client, ready), name="agentplex-client"
        )
        self._thread.daemon = True
        self._thread.start()
        try:
            self.portal = ready.result()
        except BaseException:
            if not ready.cancel() and ready.exception() is None:
                self.portal = ready.result()  # it came up just as Ctrl-C arrived
                self.close()
            raise

    @staticmethod
    async def _serve(client: AsyncClient, ready: Future[BlockingPortal]) -> None:
        try:
            async with client, BlockingPortal() as portal:
                try:
                    ready.set_result(portal)
                except InvalidStateError:
                    return  # the constructor was interrupted and gave up waiting
                await portal.sleep_until_stopped()
        except BaseException as exc:
            if ready.cancelled():
                return  # nobody waits for this client any more
            if ready.done():
                raise
            ready.set_exception(exc)  # connecting failed: the constructor raises it

    def call(self, func: Callable[[], Awaitable[R]]) -> R:
        """Run ``func()`` on the loop and return its result; an interruption (Ctrl-C)
        while waiting cancels it there too."""
        done = threading.Event()
        try:
            future = self.portal.start_task_soon(_setting, func, done)
        except RuntimeError:
            if self._thread.is_alive():
                raise
            raise RuntimeError("this agentplex Client is closed") from None
        try:
            return future.result()
        except BaseException:
            if future.cancel():  # still running: not its error but ours (KeyboardInterrupt)
                done.wait(CANCEL_TIMEOUT)
            raise

    def close(self) -> None:
        """Cancel every call still running, close the sockets, end the thread (waiting at
        most CLOSE_TIMEOUT). Idempotent; safe from any thread."""
        if threading.current_thread() is self._thread:
            # a finalizer run by the garbage collector on the loop's own thread: the
            # portal cannot be called from there, and a thread cannot join itself
            threading.Thread(target=self.close, daemon=True).start()
            return
        with contextlib.suppress(RuntimeError):  # the loop has stopped already
            self.portal.start_task_soon(self.portal.stop, True)
        self._thread.join(CLOSE_TIMEOUT)


async def _setting(func: Callable[[], Awaitable[R]], done: threading.Event) -> R:
    """``await func()``, then set ``done`` however it ended."""
    try:
        return await func()
    finally:
        done.set()


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Awaitable[R]],
) -> Callable[Concatenate[Client, P], R]:
    """AsyncClient's ``method`` as a blocking Client method, with its signature and docs."""

    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.call(partial(method, self._async, *args, **kwargs))

    functools.update_wrapper(call, method)  # __wrapped__: help() shows the real signature
    call.__qualname__ = f"Client.{method.__name__}"
    return call


class Client:
    """Talks to one daemon, blocking. Use as ``with Client() as client: ...``.

    A client that is never closed is closed when it is garbage collected, or at the
    latest when the interpreter exits.
    """

    def __init__(
        self, runtime_dir: Path | str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._async = AsyncClient(runtime_dir, timeout=timeout)
        self._loop = _Loop(self._async)
        # the finalizer holds the loop, never the client, so the client can be collected
        self._close = weakref.finalize(self, self._loop.close)

    def close(self) -> None:
        """Disconnect and stop the background loop; calls still running are cancelled."""
        self._close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    start = _blocking(AsyncClient.start)
    send = _blocking(AsyncClient.send)
    interrupt = _blocking(AsyncClient.interrupt)
    terminate = _blocking(AsyncClient.terminate)
    list = _blocking(AsyncClient.list)
    inspect = _blocking(AsyncClient.inspect)
    switch = _blocking(AsyncClient.switch)
    backends = _blocking(AsyncClient.backends)
    permit = _blocking(AsyncClient.permit)
    personas = _blocking(AsyncClient.personas)
    ping = _blocking(AsyncClient.ping)
    replay = _blocking(AsyncClient.replay)
    panel_create = _blocking(AsyncClient.panel_create)
    panel_list = _blocking(AsyncClient.panel_list)
    panel_show = _blocking(AsyncClient.panel_show)
    panel_say = _blocking(AsyncClient.panel_say)
    panel_react = _blocking(AsyncClient.panel_react)
    panel_decide = _blocking(AsyncClient.panel_decide)
    panel_control = _blocking(AsyncClient.panel_control)
    panel_report = _blocking(AsyncClient.panel_report)
    panel_next = _blocking(AsyncClient.panel_next)

    @contextmanager
    def subscribe(
        self,
        *prefixes: str | bytes,
        ready_timeout: float | None = None,
        expand_batches: bool = True,
    ) -> Iterator[SyncSubscription]:
        """A live subscription (see AsyncClient.subscribe), iterated synchronously."""
        subscription = self._async.subscribe(
            *prefixes, ready_timeout=ready_timeout, expand_batches=expand_batches
        )
        with self._loop.portal.wrap_async_context_manager(subscription) as sub:
            yield SyncSubscription(self._loop, sub)

    def follow(self, session: str, from_seq: int = 1) -> Iterator[p.Chunk]:
        """Every chunk of a session, exactly once, in order (see AsyncClient.follow)."""
        chunks = self._async.follow(session, from_seq)
        try:
            while True:
                try:
                    yield self._loop.call(chunks.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            # After an interruption the cancelled step may still be unwinding ("already
            # running") or the client closed: either way nothing is left to close here.
            with contextlib.suppress(RuntimeError):
                self._loop.call(chunks.aclose)


class SyncSubscription:
    """A blocking iterator over the events of one subscription."""

    def __init__(self, loop: _Loop, sub: Subscription) -> None:
        self._loop = loop
        self._sub = sub

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> p.Event:
        return self._loop.call(self._sub.__anext__)

    def receive(self, timeout: float) -> p.Event | None:
        """The next event within ``timeout`` seconds, else None."""
        return self._loop.call(partial(self._sub.receive, timeout))
