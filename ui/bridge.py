"""One page's WebSocket: the daemon's events out, the page's requests in, their replies out.

The page's frames are untrusted input like any client's: a frame that does not decode is
answered ``bad_request`` and the socket goes on serving. Requests run concurrently (a
slow ``terminate`` does not hold up a ``replay``), at most ``MAX_IN_FLIGHT`` at once: past
that the bridge stops reading the socket until one finishes. Everything the page is sent
goes through its bounded :class:`Outbox`; when that closes (the page is too slow, or the
server is stopping) the socket is closed with the reason.
"""

from __future__ import annotations

from typing import Final

import anyio
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentplex import protocol as p
from agentplex.protocol.errors import (
    AgentplexError,
    BadReply,
    BadRequest,
    DaemonNotRunning,
    DaemonUnavailable,
    FrameTooLarge,
    RequestTimeout,
)
from agentplex.ui import page_protocol
from agentplex.ui.link import DaemonLink
from agentplex.ui.outbox import Outbox

MAX_IN_FLIGHT: Final = 64
BRIDGE_ERRORS: Final = (RequestTimeout, BadReply, FrameTooLarge, DaemonUnavailable)
"""Failures of the bridge's own, answered as ``error``; any other error is the daemon's
error reply, passed on as ``reply``."""


async def serve_page(websocket: WebSocket, link: DaemonLink) -> None:
    """Serve one page until it leaves, falls behind, or the server stops."""
    await websocket.accept()
    outbox = Outbox()
    link.attach(outbox)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_frames, websocket, outbox, tg.cancel_scope)
            await _read_requests(websocket, link, outbox, tg)
            tg.cancel_scope.cancel()
    except* WebSocketDisconnect:
        pass  # the page left while a frame was on its way: nothing to tell it
    finally:
        link.detach(outbox)


async def _send_frames(websocket: WebSocket, outbox: Outbox, done: anyio.CancelScope) -> None:
    """Send the outbox's frames; once it closes, close the socket with its reason."""
    while (frame := await outbox.get()) is not None:
        await websocket.send_text(frame)
    assert outbox.closed is not None
    await websocket.close(outbox.closed.code, outbox.closed.reason)
    done.cancel()  # nothing more to read: the page reconnects


async def _read_requests(
    websocket: WebSocket, link: DaemonLink, outbox: Outbox, tg: TaskGroup
) -> None:
    """Start a task per request the page sends, until it disconnects."""
    slots = anyio.Semaphore(MAX_IN_FLIGHT)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            outbox.put(page_protocol.error_frame(None, BadRequest.code, "send JSON text frames"))
            continue
        await slots.acquire()
        tg.start_soon(_answer, link, outbox, text, slots)


async def _answer(link: DaemonLink, outbox: Outbox, text: str, slots: anyio.Semaphore) -> None:
    try:
        outbox.put(await _reply_to(link, text))
    finally:
        slots.release()


async def _reply_to(link: DaemonLink, text: str) -> str:
    """The frame answering one frame from the page."""
    try:
        page_id, request = page_protocol.decode_request(text)
    except page_protocol.BadPageFrame as exc:
        return page_protocol.error_frame(exc.page_id, BadRequest.code, exc.message)
    try:
        reply = await link.request(request)
    except DaemonNotRunning as exc:
        return page_protocol.error_frame(page_id, DaemonUnavailable.code, exc.message)
    except BRIDGE_ERRORS as exc:
        return page_protocol.error_frame(page_id, exc.code, exc.message)
    except AgentplexError as exc:  # the daemon's error reply, raised by the client
        error = p.Error(id=page_id, code=exc.code, message=exc.message)
        return page_protocol.reply_frame(page_id, error)
    return page_protocol.reply_frame(page_id, reply)
