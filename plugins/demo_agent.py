"""An offline scripted agent that speaks Claude Code's headless stream-json dialect.

Run as ``python -m agentplex.plugins.demo_agent -p PROMPT [--resume ID] ...``, or with
``-p`` last and no prompt to read the prompt from stdin (as ``claude -p`` does); other
Claude-like flags are accepted and ignored. It remembers each conversation in
``$AGENTPLEX_DEMO_HOME/<session-id>.json`` and types its reply word by word, about 1.5 s
in all (``AGENTPLEX_DEMO_DELAY`` sets the seconds per word; at 0 it streams a line per
delta, :mod:`agentplex.plugins.demo_stream` writing the lines). Words in the prompt steer it:
``SLOW`` types 200 words (at least 0.02 s each, so there is time to interrupt), ``CRASH``
dies mid-stream with exit 3 and no result, ``FAIL`` reports an API error with exit 1,
``BACKGROUND`` starts a detached ``sleep`` and leaves it running, the way agents' shell
tools often do (its pid is in the reply). A prompt over 1000 characters is repeated as its
length and sha256, so a test can tell that a big prompt arrived whole. A persona whose
instructions say ``EXIT1`` gives each reply and its result, then exits 1 (a CLI failing on
its way out; one process per turn only).

In a panel (its prompts carry a panel's header lines) it answers in character instead, as
:mod:`agentplex.plugins.demo_panel` says: its persona is ``AGENTPLEX_DEMO_PERSONA`` and the
instructions of ``--append-system-prompt``. With ``AGENTPLEX_DEMO_RECORD=FILE`` it appends
each prompt it receives to FILE as a JSON line (``session``: the agentplex session,
``conversation``, ``turn``, ``prompt``), so a test can check what a member was told.

Stdlib only (its panel module too), so it starts fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agentplex.plugins import demo_panel
from agentplex.plugins.demo_stream import (
    INIT,
    Crashed,
    Turn,
    fail,
    finish,
    interrupted,
    result,
    type_reply,
)

TYPING_SECONDS = 1.5
SLOW_WORDS = 200
SLOW_MIN_DELAY = 0.02
QUOTE_LIMIT = 1000
"""Characters of a prompt the reply repeats; a longer one is told by its size and digest."""
PERSONA_VARIABLE = "AGENTPLEX_DEMO_PERSONA"
RECORD_VARIABLE = "AGENTPLEX_DEMO_RECORD"
SESSION_VARIABLE = "AGENTPLEX_SESSION_ID"
"""Set by the daemon in every agent's environment; names the session in a record."""
FILLER = (
    "I am the agentplex demo agent, typing this reply one word at a time so you can watch "
    "the stream arrive. Nothing here calls a model: every word is scripted, yet I remember "
    "the whole conversation, so resuming me works just like resuming a real agent."
)
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
EXIT_AFTER_RESULT = "EXIT1"
"""In a persona's instructions: each turn gives its reply and result, then exits 1."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo_agent", description="An offline scripted agent.")
    parser.add_argument("-p", "--print", dest="prompt", nargs="?", const=None)
    parser.add_argument("--resume")
    parser.add_argument("--output-format", default="stream-json")
    parser.add_argument("--include-partial-messages", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--append-system-prompt", dest="instructions")
    args, _ignored = parser.parse_known_args(_attach_prompt(argv))
    if args.prompt is None:  # no prompt in argv: it comes on stdin, whole, until EOF
        args.prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if not args.prompt.strip():
        parser.error("the prompt must not be empty")
    return args


def _attach_prompt(argv: list[str]) -> list[str]:
    """Join ``-p VALUE`` into one argument so that a prompt may start with a dash; a ``-p``
    that ends the command line has no value (the prompt is on stdin)."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("-p", "--print"):
            value = next(args, None)
            out.append("--print" if value is None else f"--print={value}")
        else:
            out.append(arg)
    return out


def demo_home() -> Path:
    home = os.environ.get("AGENTPLEX_DEMO_HOME")
    return Path(home) if home else Path(tempfile.gettempdir()) / f"agentplex-demo-{os.getuid()}"


def load_turns(home: Path, session_id: str) -> list[dict[str, str]] | None:
    """The earlier turns of a conversation, or None when there is no such conversation."""
    if not _SAFE_ID.fullmatch(session_id):
        return None
    try:
        return list(json.loads((home / f"{session_id}.json").read_text())["turns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_turns(home: Path, session_id: str, turns: list[dict[str, str]]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{session_id}.json"
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps({"session_id": session_id, "turns": turns}))
    os.replace(temp, path)


def compose(prompt: str, turns: list[dict[str, str]]) -> list[str]:
    """The words of the reply: the turn number and what was said before, then filler."""
    text = f"Turn {len(turns) + 1}. You said: {quote(prompt)}."
    if turns:
        text += f" Before that you said: {quote(turns[-1]['prompt'])}."
    return pad_if_slow(prompt, f"{text} {FILLER}".split())


def pad_if_slow(prompt: str, words: list[str]) -> list[str]:
    if "SLOW" not in prompt:
        return words
    filler = FILLER.split()
    return words + [filler[i % len(filler)] for i in range(max(0, SLOW_WORDS - len(words)))]


def panel_words(
    args: argparse.Namespace, turns: list[dict[str, str]], number: int
) -> list[str] | None:
    """The words of an in-character panel reply, or None outside a panel. They are split on
    single spaces only, so the reply keeps its lines (markers stand on lines of their own)."""
    prompts = [*(t["prompt"] for t in turns), args.prompt]
    seat = demo_panel.seat(prompts, os.environ.get(PERSONA_VARIABLE), args.instructions)
    if seat is None:
        return None
    seed = os.environ.get(demo_panel.SEED_VARIABLE, "")
    earlier = "\n".join(t["reply"] for t in turns)
    text = demo_panel.reply(seat, args.prompt, number, seed, earlier)
    return pad_if_slow(args.prompt, text.split(" "))


def record(session_id: str, number: int, prompt: str) -> None:
    """Append the prompt to ``$AGENTPLEX_DEMO_RECORD`` (if set) in one write, so the lines of
    members writing at once never interleave."""
    path = os.environ.get(RECORD_VARIABLE)
    if not path:
        return
    line = {
        "session": os.environ.get(SESSION_VARIABLE),
        "conversation": session_id,
        "turn": number,
        "prompt": prompt,
        "ts": time.time(),  # when the prompt had reached this process (a benchmark reads it)
    }
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def quote(prompt: str) -> str:
    """A prompt as the reply repeats it: whole, or for a long one its size and digest (a
    pasted file would make a reply of a hundred thousand words)."""
    if len(prompt) <= QUOTE_LIMIT:
        return prompt
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    return f"{len(prompt)} characters with sha256 {digest}"


def word_delay(prompt: str, words: int) -> float:
    try:
        delay = float(os.environ["AGENTPLEX_DEMO_DELAY"])
    except (KeyError, ValueError):
        delay = TYPING_SECONDS / max(words, 1)
    return max(delay, SLOW_MIN_DELAY) if "SLOW" in prompt else max(delay, 0.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    turn = Turn(args.include_partial_messages)
    signal.signal(signal.SIGINT, turn.on_sigint)
    code = speak(turn, args.prompt, args.resume, args.instructions)
    if code == 0 and EXIT_AFTER_RESULT in (args.instructions or ""):
        return 1  # a CLI failing on its way out, its reply already given (a persona's test)
    if code == 0:  # AGENTPLEX_DEMO_LINGER: seconds to stay after the result, as a CLI's exit takes
        time.sleep(max(float(os.environ.get("AGENTPLEX_DEMO_LINGER") or 0), 0.0))
    return code


def speak(turn: Turn, prompt: str, resume: str | None, instructions: str | None) -> int:
    """One turn: the reply to ``prompt`` in the conversation ``resume`` (None: a new one,
    whose id ``turn.session_id`` then holds); the exit code a turn process would end with."""
    home = demo_home()
    turns = load_turns(home, resume) if resume else []
    turn.session_id = resume if resume and turns is not None else str(uuid.uuid4())
    if turns is None:
        result(
            turn,
            "",
            subtype="error_during_execution",
            is_error=True,
            errors=[f"No conversation found with session ID: {resume}"],
        )
        return 1
    turn.number = len(turns) + 1
    record(turn.session_id, turn.number, prompt)
    said = [prompt, *(f"{t['prompt']} {t['reply']}" for t in turns)]
    turn.input_tokens = sum(len(text) for text in said) // 4 + 1
    turn.line(INIT | {"cwd": os.getcwd()})
    if "FAIL" in prompt:
        fail(turn)
        return 1
    seat = argparse.Namespace(prompt=prompt, instructions=instructions)
    words = panel_words(seat, turns, turn.number) or compose(prompt, turns)
    if "BACKGROUND" in prompt:
        words = [f"background={leave_a_process_behind()}", *words]
    try:
        typed = type_reply(turn, words, word_delay(prompt, len(words)), "CRASH" in prompt)
    except Crashed:
        print("demo_agent: crashing on purpose (the prompt said CRASH)", file=sys.stderr)
        return 3
    text = " ".join(typed)
    save_turns(home, turn.session_id, [*turns, {"prompt": prompt, "reply": text}])
    if len(typed) < len(words):
        interrupted(turn, text)
    else:
        finish(turn, text)
    return 0


def leave_a_process_behind() -> int:
    """Start ``sleep`` in a session of its own, as a shell tool would, and let it be."""
    process = subprocess.Popen(
        ["sleep", "300"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process.pid


if __name__ == "__main__":
    sys.exit(main())
