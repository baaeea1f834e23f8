"""How the CLI shows sessions and chunks to a person (``--json`` bypasses all of this)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from agentplex.protocol import Chunk, ChunkKind, SessionInfo, Stream, encode


def session_table(sessions: list[SessionInfo], active: str | None) -> str:
    """``agentplex ls``: one line per session, the active one starred."""
    header = (
        f"  {'ID':<8} {'BACKEND':<8} {'STATUS':<11} {'TURNS':>5} {'CHUNKS':>7} {'AGE':>6}"
        "  TAG/PERSONA"
    )
    lines = [header]
    now = time.time()
    for s in sessions:
        mark = "*" if s.id == active else " "
        keeps = "(keeps children)" if s.keep_children else None
        label = " ".join(x for x in (s.tag, s.persona, keeps) if x) or "-"
        lines.append(
            f"{mark} {s.id[:8]:<8} {s.backend:<8} {s.status.value:<11} {s.turns:>5} "
            f"{s.chunks:>7} {_age(now - s.created_at):>6}  {label}"
        )
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


class ChunkPrinter:
    """Prints a stream of chunks as a conversation: streamed text typed out in place."""

    def __init__(self, out: TextIO = sys.stdout, *, as_json: bool = False) -> None:
        self._out = out
        self._json = as_json
        self._streaming = False

    def print(self, chunk: Chunk) -> None:
        if self._json:
            self._out.write(encode(chunk).decode() + "\n")
        else:
            self._print_human(chunk)
        self._out.flush()

    def _print_human(self, chunk: Chunk) -> None:
        if chunk.kind is ChunkKind.TEXT and chunk.partial and chunk.stream is not Stream.STDERR:
            self._out.write(chunk.text)
            self._streaming = True
            return
        if chunk.kind is ChunkKind.TEXT and self._streaming:
            self._out.write("\n")
            self._streaming = False
            return
        self._end_stream()
        self._out.write(describe(chunk) + "\n")

    def _end_stream(self) -> None:
        if self._streaming:
            self._out.write("\n")
            self._streaming = False

    def close(self) -> None:
        self._end_stream()
        self._out.flush()


def describe(chunk: Chunk) -> str:
    """One chunk as one readable line (or block)."""
    match chunk.kind:
        case ChunkKind.TEXT:
            return chunk.text if chunk.stream is not Stream.STDERR else f"[stderr] {chunk.text}"
        case ChunkKind.RESULT:
            return f"[result] {_usage(chunk)}"
        case ChunkKind.TOOL_USE:
            return f"[tool_use] {chunk.tool_name}: {chunk.text}"
        case ChunkKind.TOOL_RESULT:
            flag = " (error)" if chunk.is_error else ""
            return f"[tool_result{flag}] {chunk.text}"
        case _:
            return f"[{chunk.kind.value}] {chunk.text}"


def _usage(chunk: Chunk) -> str:
    u = chunk.usage
    if u is None:
        return "turn done"
    parts = [f"{u.input_tokens} in / {u.output_tokens} out tokens"]
    if u.cost_usd:
        parts.append(f"${u.cost_usd:.4f}")
    if u.duration_ms is not None:
        parts.append(f"{u.duration_ms} ms")
    status = "error" if chunk.is_error else "ok"
    return f"{status}, " + ", ".join(parts)
