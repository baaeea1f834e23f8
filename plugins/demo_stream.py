"""What the demo agent writes for one turn: Claude Code's headless stream-json lines (the
``init``, the typed text deltas, the assistant message, the ``result``), each flushed as
it is written, and the turn's endings (finished, interrupted by SIGINT, failed).

At a delay per word above 0 the reply is typed a word per delta, as a person watching
would see it arrive. At ``AGENTPLEX_DEMO_DELAY=0`` (a benchmark's or a test's speaker,
where nobody watches) a delta carries a line of the reply: the same text, the same
lines, a few writes instead of one per word, so that the daemon is not kept parsing
hundreds of events per reply. ``CRASH`` still types word by word, so it dies mid-reply.

Stdlib only, as the agent.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

MODEL = "demo-1"
CRASH_AFTER_WORDS = 2
INTERRUPTED = "[Request interrupted by user]"
INIT: dict[str, Any] = {
    "type": "system",
    "subtype": "init",
    "tools": [],
    "mcp_servers": [],
    "model": MODEL,
    "permissionMode": "default",
    "apiKeySource": "none",
    "output_style": "default",
}
"""The line that opens each turn (with its ``cwd``), as Claude's does."""


class Crashed(Exception):
    """Raised while typing when the prompt asked the agent to crash."""


class Turn:
    """Writes the stream-json lines of one turn, each flushed as it is written."""

    def __init__(self, partial: bool) -> None:
        self.partial = partial
        self.session_id = ""
        self.number = 0
        self.input_tokens = 0
        self.msg_id = f"msg_demo_{uuid.uuid4().hex[:24]}"
        self.started = time.monotonic()
        self.interrupted = False
        """Set by the SIGINT handler; the typing loop acts on it between deltas."""

    def on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def line(self, obj: dict[str, Any]) -> None:
        obj = {**obj, "session_id": self.session_id, "uuid": str(uuid.uuid4())}
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def event(self, event: dict[str, Any]) -> None:
        if self.partial:
            self.line({"type": "stream_event", "event": event, "parent_tool_use_id": None})

    def usage(self, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }


def turn_cost() -> float:
    """What a turn reports it cost: ``AGENTPLEX_DEMO_COST`` dollars (default 0), so a test
    can run a cost budget with no model."""
    try:
        cost = float(os.environ.get("AGENTPLEX_DEMO_COST", "0"))
    except ValueError:
        return 0.0
    return cost if cost >= 0 and cost == cost and cost != float("inf") else 0.0


def deltas(words: list[str], delay: float, crash: bool) -> list[list[str]]:
    """The words each text delta carries: one word each, or with no delay (and no crash to
    stage mid-reply) a line each, the line break kept in the word that holds it."""
    if delay > 0 or crash:
        return [[word] for word in words]
    lines: list[list[str]] = [[]]
    for word in words:
        lines[-1].append(word)
        if "\n" in word:
            lines.append([])
    return [line for line in lines if line]


def type_reply(turn: Turn, words: list[str], delay: float, crash: bool) -> list[str]:
    """Stream the words as text deltas, stopping early on SIGINT; the words typed."""
    start: dict[str, Any] = {
        "id": turn.msg_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": turn.usage(1),
    }
    turn.event({"type": "message_start", "message": start})
    turn.event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    typed: list[str] = []
    for piece in deltas(words, delay, crash):
        if turn.interrupted:
            break
        if crash and len(typed) == CRASH_AFTER_WORDS:
            raise Crashed
        text = " ".join(piece)
        turn.event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f" {text}" if typed else text},
            }
        )
        typed += piece
        if delay > 0:
            time.sleep(delay)
    return typed


def assistant(turn: Turn, text: str, model: str = MODEL) -> None:
    message = {
        "id": turn.msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": turn.usage(1),
    }
    turn.line({"type": "assistant", "message": message, "parent_tool_use_id": None})


def result(turn: Turn, text: str, **fields: Any) -> None:
    turn.line(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "duration_ms": int((time.monotonic() - turn.started) * 1000),
            "num_turns": turn.number,
            "result": text,
            "total_cost_usd": turn_cost(),
            "usage": turn.usage(len(text.split())),
            **fields,
        }
    )


def finish(turn: Turn, text: str) -> None:
    turn.event({"type": "content_block_stop", "index": 0})
    assistant(turn, text)
    turn.event(
        {
            "type": "message_delta",
            "usage": {"output_tokens": len(text.split())},
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        }
    )
    turn.event({"type": "message_stop"})
    result(turn, text)


def interrupted(turn: Turn, text: str) -> None:
    if text:
        assistant(turn, text)
    content = [{"type": "text", "text": INTERRUPTED}]
    turn.line(
        {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
        }
    )
    result(turn, "", subtype="error_during_execution", is_error=True, errors=[INTERRUPTED])


def fail(turn: Turn) -> None:
    text = 'API Error: 500 {"type":"error","error":{"type":"api_error","message":"FAIL"}}'
    assistant(turn, text, model="<synthetic>")
    result(turn, text, is_error=True, api_error_status=500)
