"""Client: the blocking face of AsyncClient, run on a background event loop.

Every method is AsyncClient's own, called through an anyio blocking portal, so the
protocol logic exists once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from agentplex import protocol as p
from agentplex.client.async_client import DEFAULT_TIMEOUT, AsyncClient, Subscription

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Awaitable[R]],
) -> Callable[Concatenate[Client, P], R]:
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._portal.call(partial(method, self._async, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class Client:
    """Talks to one daemon, blocking. Use as ``with Client() as client: ...``."""

    def __init__(
        self, runtime_dir: Path | str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._stack = ExitStack()
        try:
            self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
            self._async: AsyncClient = self._stack.enter_context(
                self._portal.wrap_async_context_manager(AsyncClient(runtime_dir, timeout=timeout))
            )
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        """Disconnect and stop the background loop."""
        self._stack.close()

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

    @contextmanager
    def subscribe(
        self, *prefixes: str | bytes, expand_batches: bool = True
    ) -> Iterator[SyncSubscription]:
        """A live subscription (see AsyncClient.subscribe), iterated synchronously."""
        subscription = self._async.subscribe(*prefixes, expand_batches=expand_batches)
        with self._portal.wrap_async_context_manager(subscription) as sub:
            yield SyncSubscription(self._portal, sub)

    def follow(self, session: str, from_seq: int = 1) -> Iterator[p.Chunk]:
        """Every chunk of a session, exactly once, in order (see AsyncClient.follow)."""
        chunks = self._async.follow(session, from_seq)
        try:
            while True:
                try:
                    yield self._portal.call(chunks.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._portal.call(chunks.aclose)


class SyncSubscription:
    """A blocking iterator over the events of one subscription."""

    def __init__(self, portal: BlockingPortal, sub: Subscription) -> None:
        self._portal = portal
        self._sub = sub

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> p.Event:
        return self._portal.call(self._sub.__anext__)

    def receive(self, timeout: float) -> p.Event | None:
        """The next event within ``timeout`` seconds, else None."""
        return self._portal.call(self._sub.receive, timeout)
