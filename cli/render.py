"""How the CLI shows sessions and chunks to a person (``--json`` bypasses all of this)."""

from __future__ import annotations

import re
import sys
import time
from typing import TextIO

import msgspec

from agentplex import protocol as p
from agentplex.protocol import Chunk, ChunkKind, SessionInfo, Stream, encode

STATUS_WIDTH = max(len(status.value) for status in p.SessionStatus)
"""The ``ls`` STATUS column fits the longest status (``waiting_input``)."""
CANCELLED = "cancelled"
"""A result chunk's text when its turn was cancelled (an ACP ``stopReason``)."""
GIST_CHARS = 160
"""How much of a chunk's text an ``events`` line shows."""


def session_table(sessions: list[SessionInfo], active: str | None) -> str:
    """``agentplex ls``: one line per session, the active one starred."""
    header = (
        f"  {'ID':<8} {'BACKEND':<8} {'STATUS':<{STATUS_WIDTH}} {'TURNS':>5} {'CHUNKS':>7} "
        f"{'AGE':>6}"
        "  TAG/PERSONA"
    )
    lines = [header]
    now = time.time()
    for s in sessions:
        mark = "*" if s.id == active else " "
        keeps = "(keeps children)" if s.keep_children else None
        label = " ".join(x for x in (s.tag, s.persona, keeps) if x) or "-"
        lines.append(
            f"{mark} {s.id[:8]:<8} {s.backend:<8} {s.status.value:<{STATUS_WIDTH}} {s.turns:>5} "
            f"{s.chunks:>7} {_age(now - s.created_at):>6}  {label}"
        )
    return "\n".join(lines)


class ListedSession(SessionInfo, frozen=True, kw_only=True):
    """A session as ``ls --json`` prints it: its info, and whether it is the active one."""

    active: bool = False


def session_listing(sessions: list[SessionInfo], active: str | None) -> str:
    """``agentplex ls --json``: a JSON array of sessions, each saying if it is active."""
    listed = [
        ListedSession(**msgspec.structs.asdict(s), active=s.id == active) for s in sessions
    ]
    return encode(listed).decode()


def describe_event(event: p.Event) -> str:
    """``agentplex events``: one line per event: its time, its type (the topic without
    the session id), the session's short id (``-`` for none), the gist."""
    session, gist, ts = _event_gist(event)
    when = time.strftime("%H:%M:%S", time.localtime(ts or time.time()))
    kind = type(event).__struct_config__.tag
    return f"{when} {kind} {session[:8] if session else '-'} {_one_line(gist)}".rstrip()


def _event_gist(event: p.Event) -> tuple[str | None, str, float]:
    """The session an event is about, what it says, and when (0: it does not say)."""
    match event:
        case p.Chunk():
            return event.session_id, f"#{event.seq} {describe(event)}", event.ts
        case p.ChunkBatch():
            last = f"-{event.last_seq}" if event.last_seq != event.first_seq else ""
            text = " | ".join(event.texts)
            return event.session_id, f"#{event.first_seq}{last} {text}", event.ts
        case p.SessionCreated(session=info):
            shown = (info.backend, info.mode.value, info.tag, info.persona)
            label = " ".join(x for x in shown if x)
            return info.id, label, info.created_at
        case p.SessionTerminated(session=info, reason=reason):
            return info.id, f"{info.status.value}: {reason}", 0.0
        case p.StatusChanged():
            return event.session_id, f"{event.previous.value} -> {event.status.value}", event.ts
        case p.SessionListChanged(sessions=sessions, active=active):
            which = f"active {active[:8]}" if active else "none active"
            return None, f"{len(sessions)} sessions, {which}", 0.0
        case p.ActiveChanged(session_id=active):
            return active, "is now the active session" if active else "no active session", 0.0
        case p.Heartbeat():
            return None, f"daemon pid {event.pid}, {event.sessions} live sessions", event.ts
        case p.SyncMark(token=token):
            return None, f"sync {token}", 0.0
        case _:
            return None, encode(event).decode(), 0.0


def _one_line(text: str) -> str:
    line = visible(" ".join(text.split()))  # an agent's escapes never reach the terminal
    return line if len(line) <= GIST_CHARS else line[: GIST_CHARS - 1] + "…"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


# -- what an agent's text may not do to the terminal it is shown on

_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # a CSI sequence (colours, cursor moves, erasing...)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""Escape sequences and control characters (C0 but tab and newline, DEL, C1) and the
Unicode line separators and bidirectional overrides (which reorder what is shown)."""
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What JSON leaves unescaped in a string yet a terminal may act on."""


def visible(text: str, *, colors: bool = False) -> str:
    """``text`` made safe to print: every control character shown as ``^X`` (ESC as
    ``^[``, carriage return ``^M``, DEL ``^?``), C1 and bidirectional controls as
    ``<U+202E>``; so an escape sequence is printed as text, never obeyed. With ``colors``,
    SGR sequences (colours and bold: ``ESC [ ... m``) pass through unchanged."""
    if text.isprintable():
        return text  # the common case, without a regex pass
    return _CONTROLS.sub(lambda m: _show(m.group(), colors), text)


def _show(found: str, colors: bool) -> str:
    if len(found) > 1:  # a CSI sequence
        if colors and _SGR.fullmatch(found):
            return found
        return "^[" + found[1:]
    code = ord(found)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def json_line(encoded: bytes) -> str:
    """An encoded JSON message as a line safe to print: JSON already escapes C0 controls;
    DEL, C1 and bidirectional controls are escaped too (still the same JSON)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded.decode())


class ChunkPrinter:
    """Prints a stream of chunks as a conversation: streamed text typed out in place.

    Two kinds of chunk continue a line: a driver's streamed deltas (``text``, partial,
    followed by the whole text once more, not printed again), and the fragments of an
    output line (``raw``, partial: cut at the size limit, or an unfinished line such as
    a prompt given out after a pause), whose line goes on in the next chunk of the same
    stream. Everything an agent says is printed through :func:`visible`.
    """

    def __init__(
        self, out: TextIO = sys.stdout, *, as_json: bool = False, colors: bool = False
    ) -> None:
        self._out = out
        self._json = as_json
        self._colors = colors
        self._streaming = False
        self._open_line: Stream | None = None
        """The stream whose output line is printed in part (a fragment), if one is."""

    def print(self, chunk: Chunk) -> None:
        if self._json:
            self._out.write(json_line(encode(chunk)) + "\n")
        else:
            self._print_human(chunk)
        self._out.flush()

    def _print_human(self, chunk: Chunk) -> None:
        if self._continues_line(chunk):
            self._write(chunk.text)
            if not chunk.partial:
                self._out.write("\n")
                self._open_line = None
            return
        if chunk.kind is ChunkKind.RAW and chunk.partial:  # a line's first fragment
            self._end_stream()
            prefix = "[stderr] " if chunk.stream is Stream.STDERR else ""
            self._write(prefix + chunk.text)
            self._open_line = chunk.stream
            return
        if chunk.kind is ChunkKind.TEXT and chunk.partial and chunk.stream is not Stream.STDERR:
            self._end_line()
            self._write(chunk.text)
            self._streaming = True
            return
        if chunk.kind is ChunkKind.TEXT and self._streaming:
            self._out.write("\n")
            self._streaming = False
            return
        self._end_stream()
        self._write(describe(chunk) + "\n")

    def _continues_line(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` is the rest of the output line a fragment began."""
        return (
            self._open_line is not None
            and chunk.stream is self._open_line
            and chunk.kind in (ChunkKind.TEXT, ChunkKind.RAW)
        )

    def _write(self, text: str) -> None:
        self._out.write(visible(text, colors=self._colors))

    def _end_line(self) -> None:
        if self._open_line is not None:
            self._out.write("\n")
            self._open_line = None

    def _end_stream(self) -> None:
        self._end_line()
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
            return f"[tool_use] {_tool_call(chunk)}"
        case ChunkKind.TOOL_RESULT:
            flag = " (error)" if chunk.is_error else ""
            return f"[tool_result{flag}] {chunk.text}"
        case _:
            return f"[{chunk.kind.value}] {chunk.text}"


def _tool_call(chunk: Chunk) -> str:
    """The drivers' text already names the tool (``Bash: echo hi``): name it once."""
    name = chunk.tool_name
    if not name or chunk.text == name or chunk.text.startswith(f"{name}:"):
        return chunk.text
    return f"{name}: {chunk.text}"


def _usage(chunk: Chunk) -> str:
    u = chunk.usage
    if chunk.is_error:
        status = "error"
    elif chunk.text == CANCELLED:
        status = "cancelled"
    else:
        status = "ok" if u is not None else "turn done"
    if u is None:
        return status
    parts = [f"{u.input_tokens} in / {u.output_tokens} out tokens"]
    if u.cost_usd:
        parts.append(f"${u.cost_usd:.4f}")
    if u.duration_ms is not None:
        parts.append(f"{u.duration_ms} ms")
    return f"{status}, " + ", ".join(parts)
