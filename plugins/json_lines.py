"""Reading a CLI's JSON-lines output: its typed events, and a chunk for every other line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from agentplex.plugins.api import ChunkData
from agentplex.protocol import ChunkKind, Stream

T = TypeVar("T")

_decode_any = msgspec.json.Decoder().decode


def raw(line: str) -> ChunkData:
    """A line kept as it is: not JSON, not for us to understand, or from stderr."""
    return ChunkData(ChunkKind.RAW, line)


def decode_line(
    line: str, stream: Stream, decode: Callable[[bytes], T], known_types: frozenset[str]
) -> T | list[ChunkData]:
    """The line's typed event, or the chunks that stand for a line that is not one.

    Never raises, so nothing a CLI prints is dropped: stderr and anything that is not a
    JSON object become ``raw``; an object of a type the schema does not know becomes
    ``system`` naming the type; a known type that does not fit its schema becomes ``raw``.
    """
    if stream != Stream.STDOUT:
        return [raw(line)]
    data = line.encode("utf-8", "replace")
    try:
        return decode(data)
    except msgspec.ValidationError:
        return [_unknown(line, data, known_types)]
    except (msgspec.DecodeError, RecursionError):
        return [raw(line)]


def _unknown(line: str, data: bytes, known_types: frozenset[str]) -> ChunkData:
    try:
        obj = _decode_any(data)
    except (msgspec.DecodeError, RecursionError):
        return raw(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return raw(line)
    if obj["type"] in known_types:
        return raw(line)
    session_id = obj.get("session_id")
    cli_session_id = session_id if isinstance(session_id, str) else None
    return ChunkData(ChunkKind.SYSTEM, obj["type"], cli_session_id=cli_session_id)
