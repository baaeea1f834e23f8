"""Which request the running code serves, so that every log line it causes says so.

One ContextVar holding (request id, type, caller), set once when ``Api.handle`` takes a
request and reset when it answers; :func:`add_request` is the structlog processor that puts
it on each line. Tasks started while serving (a session's readers, its turn) inherit it, as
asyncio copies the context into every task: the lines they log are caused by that request.
A session's own long-lived task calls :func:`forget`, its lines belong to the session.

Cheaper than structlog's ``bound_contextvars`` on this path (one ``set``/``reset`` per
request, one ``get`` per log line), which starts run for every session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from structlog.typing import EventDict, WrappedLogger

_CURRENT: ContextVar[tuple[int, str, str] | None] = ContextVar("agentplex_request", default=None)


@contextmanager
def serving(request_id: int, request_type: str, caller: str) -> Iterator[None]:
    """Everything logged inside (and in tasks started inside) names this request."""
    token = _CURRENT.set((request_id, request_type, caller))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def forget() -> None:
    """This task no longer serves the request it was started by."""
    _CURRENT.set(None)


def current() -> tuple[int, str, str] | None:
    """The request being served here: (id, type, caller), or None."""
    return _CURRENT.get()


def add_request(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``request_id``, ``request_type`` and ``caller`` of the request
    being served, on every line logged while serving it."""
    served = _CURRENT.get()
    if served is not None:
        event_dict.setdefault("request_id", served[0])
        event_dict.setdefault("request_type", served[1])
        event_dict.setdefault("caller", served[2])
    return event_dict
