"""Encoders and decoders for every union of the wire (each built once, reused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Generic, TypeVar

import msgspec

from agentplex.protocol.events import AnyChunk, Event
from agentplex.protocol.records import Record
from agentplex.protocol.replies import Reply
from agentplex.protocol.requests import Envelope, Request

if TYPE_CHECKING:
    from typing_extensions import Buffer

T = TypeVar("T")


class JsonDecoder(Generic[T]):
    """A msgspec JSON decoder whose every failure on bad input is a ``msgspec.DecodeError``.

    msgspec raises RecursionError for JSON nested deeper than it recurses (a few thousand
    ``[``, in a field typed ``Any`` or one it skips): that is bad input like any other, to
    be answered ``bad_request`` (a client: ``BadReply``), not an internal error.
    """

    __slots__ = ("_decoder",)

    def __init__(self, decoder: msgspec.json.Decoder[T]) -> None:
        self._decoder = decoder

    def decode(self, buf: Buffer | str, /) -> T:
        """The decoded message; DecodeError (ValidationError for a wrong shape) if none."""
        try:
            return self._decoder.decode(buf)
        except RecursionError:
            raise msgspec.DecodeError("JSON nested too deeply") from None


encode = msgspec.json.Encoder().encode
request_decoder: Final[JsonDecoder[Request]] = JsonDecoder(msgspec.json.Decoder(Request))
envelope_decoder: Final = JsonDecoder(msgspec.json.Decoder(Envelope))
reply_decoder: Final[JsonDecoder[Reply]] = JsonDecoder(msgspec.json.Decoder(Reply))
event_decoder: Final[JsonDecoder[Event]] = JsonDecoder(msgspec.json.Decoder(Event))
record_decoder: Final[JsonDecoder[Record]] = JsonDecoder(msgspec.json.Decoder(Record))
chunk_decoder: Final[JsonDecoder[AnyChunk]] = JsonDecoder(msgspec.json.Decoder(AnyChunk))
