"""The JSON text frames between the page and the server on ``/ws`` (tagged by ``op``).

Page to server: ``request`` (a wire request, as the README's wire section documents it).
Server to page: ``hello`` first, ``daemon`` (whether the daemon is reachable), ``event``
(every event the daemon publishes, as it publishes it) and ``reply`` (to one request).
Each frame is encoded once; an event frame embeds the wire event's JSON as the daemon
published it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from agentplex import protocol as p

PAGE_PROTOCOL_VERSION: Final = 1


class PageRequest(msgspec.Struct, frozen=True, tag_field="op", tag="request"):
    """A wire request from the page; ``id`` is the page's own, echoed in the reply."""

    id: int
    request: msgspec.Raw


class _PageId(msgspec.Struct, frozen=True):
    """What a frame that is not a valid request may still say: its id, to answer it."""

    id: int | None = None


class Hello(msgspec.Struct, frozen=True, tag_field="op", tag="hello"):
    version: int = PAGE_PROTOCOL_VERSION


class DaemonState(msgspec.Struct, frozen=True, tag_field="op", tag="daemon"):
    up: bool


class EventFrame(msgspec.Struct, frozen=True, tag_field="op", tag="event"):
    topic: str
    event: msgspec.Raw


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str


class ReplyFrame(msgspec.Struct, frozen=True, tag_field="op", tag="reply", omit_defaults=True):
    """Exactly one of ``reply`` (the daemon's wire reply, an error reply included) and
    ``error`` (the bridge could not get a reply: bad request JSON, daemon unreachable)."""

    id: int | None
    reply: msgspec.Raw | None = None
    error: ErrorBody | None = None


_page_decoder: Final = msgspec.json.Decoder(PageRequest)
_id_decoder: Final = msgspec.json.Decoder(_PageId)
_encode: Final = msgspec.json.Encoder().encode


class BadPageFrame(Exception):
    """A frame from the page is not a valid request; ``page_id`` is its id if readable."""

    def __init__(self, message: str, page_id: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.page_id = page_id


def decode_request(text: str) -> tuple[int, p.Request]:
    """The page's id and the wire request a frame carries, or BadPageFrame saying why."""
    try:
        frame = _page_decoder.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadPageFrame(f"not a request frame: {exc}", _readable_id(text)) from None
    try:
        return frame.id, p.request_decoder.decode(frame.request)
    except msgspec.DecodeError as exc:
        raise BadPageFrame(f"not a valid wire request: {exc}", frame.id) from None


def _readable_id(text: str) -> int | None:
    try:
        return _id_decoder.decode(text).id
    except (msgspec.DecodeError, RecursionError):
        return None


def hello() -> str:
    return _encode(Hello()).decode()


def daemon_state(up: bool) -> str:
    return _encode(DaemonState(up=up)).decode()


def event_frame(topic: bytes, event: bytes) -> str:
    """The frame for one event as the daemon published it (topic, JSON), its JSON embedded
    as it came: the bridge relays every event, so it neither decodes nor re-encodes them
    (the same bytes as :class:`EventFrame` would encode to)."""
    frame = b'{"op":"event","topic":' + _encode(topic.decode("ascii", "replace"))
    return (frame + b',"event":' + event + b"}").decode("utf-8", "replace")


def reply_frame(page_id: int, reply: p.Reply) -> str:
    """The daemon's reply, carrying the page's id rather than the bridge's own."""
    wire = p.encode(msgspec.structs.replace(reply, id=page_id))
    return _encode(ReplyFrame(id=page_id, reply=msgspec.Raw(wire))).decode()


def error_frame(page_id: int | None, code: str, message: str) -> str:
    return _encode(ReplyFrame(id=page_id, error=ErrorBody(code=code, message=message))).decode()
