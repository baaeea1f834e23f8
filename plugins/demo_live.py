"""The demo agent as one long-lived process: ``python -m agentplex.plugins.demo_live
--input-format stream-json [--resume ID] ...`` reads Claude's stream-json ``user`` lines on
stdin and answers each as one turn of :mod:`agentplex.plugins.demo_agent` (the same words,
markers, records and steering words), all in one conversation, until stdin ends.

So a session (a panel member) in long-lived mode is handed each turn by a write to a pipe,
not by starting a Python process. SIGINT stops the turn being typed (it ends with an
interrupted result) and the process waits for the next line; ``CRASH`` still ends it (exit 3).
``--resume`` continues a saved conversation: a session relaunched after a daemon restart.

Stdlib only, as the turn agent.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from agentplex.plugins.demo_agent import speak
from agentplex.plugins.demo_stream import Turn

CRASHED = 3
"""The exit code of a turn that crashed on purpose: it ends the process too."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo_live", description="The demo agent, long-lived.")
    parser.add_argument("--resume")
    parser.add_argument("--include-partial-messages", action="store_true")
    parser.add_argument("--append-system-prompt", dest="instructions")
    args, _ignored = parser.parse_known_args(argv)  # Claude's other flags: accepted, unused
    return args


def user_text(line: str) -> str | None:
    """The text of a stream-json ``user`` line; None for any other line (ignored)."""
    try:
        message: Any = json.loads(line)["message"]
        content = message["content"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: their text, joined
        texts = [b.get("text") for b in content if isinstance(b, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    return None


class Conversation:
    """The turns of one process: the running one takes SIGINT, the next continues its
    conversation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.resume: str | None = args.resume
        self.turn: Turn | None = None
        signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum: int, frame: object) -> None:
        if self.turn is not None:  # between turns there is nothing to stop
            self.turn.on_sigint(signum, frame)

    def answer(self, prompt: str) -> int:
        """One turn; the exit code a turn process would end with."""
        turn = self.turn = Turn(self.args.include_partial_messages)
        try:
            code = speak(turn, prompt, self.resume, self.args.instructions)
        finally:
            self.turn = None
        if code == 0:  # the conversation now exists: every later turn continues it
            self.resume = turn.session_id
        return code


def main(argv: list[str] | None = None) -> int:
    conversation = Conversation(parse_args(sys.argv[1:] if argv is None else argv))
    for line in sys.stdin:  # each line as soon as it arrives; the end of stdin ends us
        prompt = user_text(line)
        if prompt and prompt.strip() and conversation.answer(prompt) == CRASHED:
            return CRASHED
    return 0


if __name__ == "__main__":
    sys.exit(main())
