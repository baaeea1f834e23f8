"""Encoders and decoders for every union of the wire (each built once, reused)."""

from __future__ import annotations

from typing import Final

import msgspec

from agentplex.protocol.events import AnyChunk, Event
from agentplex.protocol.records import Record
from agentplex.protocol.replies import Reply
from agentplex.protocol.requests import Envelope, Request

encode = msgspec.json.Encoder().encode
request_decoder: Final[msgspec.json.Decoder[Request]] = msgspec.json.Decoder(Request)
envelope_decoder: Final = msgspec.json.Decoder(Envelope)
reply_decoder: Final[msgspec.json.Decoder[Reply]] = msgspec.json.Decoder(Reply)
event_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
record_decoder: Final[msgspec.json.Decoder[Record]] = msgspec.json.Decoder(Record)
chunk_decoder: Final[msgspec.json.Decoder[AnyChunk]] = msgspec.json.Decoder(AnyChunk)
