"""The demo agent as one long-lived process (``demo_live``): run for real, fed stream-json
``user`` lines on stdin; and a long-lived demo session against the real daemon, continued
after the daemon was SIGKILLed (a new process resumes its conversation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import psutil
from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p

TIMEOUT = 60.0
LIVE = [sys.executable, "-m", "agentplex.plugins.demo_live", "--input-format", "stream-json"]
FLAGS = ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]


def user_line(text: str) -> bytes:
    return json.dumps({"type": "user", "message": {"role": "user", "content": text}}).encode()


def until_result(out: IO[bytes]) -> list[dict[str, Any]]:
    """The lines of one turn, up to and with its result (a blocking read: the agent flushes
    every line, and a turn always ends with its result)."""
    lines = []
    while True:
        raw = out.readline()
        assert raw, "the agent ended before its result"
        lines.append(json.loads(raw))
        if lines[-1]["type"] == "result":
            return lines


def agent(tmp_path: Path, delay: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AGENTPLEX_DEMO_HOME": str(tmp_path), "AGENTPLEX_DEMO_DELAY": delay}
    return subprocess.Popen(LIVE + FLAGS, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def test_one_process_answers_each_line_in_one_conversation_until_stdin_ends(
    tmp_path: Path,
) -> None:
    with agent(tmp_path, "0") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(user_line("alpha") + b"\n")
            proc.stdin.flush()
            first = until_result(proc.stdout)
            proc.stdin.write(user_line("beta") + b"\n")
            proc.stdin.flush()
            second = until_result(proc.stdout)
            proc.stdin.close()
            assert proc.wait(TIMEOUT) == 0  # the end of stdin ends it
        finally:
            proc.kill()
    assert first[-1]["result"].startswith("Turn 1. You said: alpha.")
    assert second[-1]["result"].startswith("Turn 2. You said: beta. Before that you said: alpha.")
    assert first[-1]["session_id"] == second[-1]["session_id"]  # one conversation


def test_sigint_ends_the_turn_being_typed_and_the_process_takes_the_next(tmp_path: Path) -> None:
    with agent(tmp_path, "0.05") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(user_line("SLOW please") + b"\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["subtype"] == "init"
            proc.send_signal(signal.SIGINT)
            cut = until_result(proc.stdout)
            proc.stdin.write(user_line("still there?") + b"\n")
            proc.stdin.flush()
            after = until_result(proc.stdout)
        finally:
            proc.kill()
    assert cut[-1]["is_error"] and cut[-1]["subtype"] == "error_during_execution"
    assert not after[-1]["is_error"] and "You said: still there?" in after[-1]["result"]


def test_a_long_lived_session_cut_by_a_daemon_crash_continues_its_conversation(
    short_tmp: Path,
) -> None:
    first = start_daemon(short_tmp, "--grace", "2")
    try:
        with first.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start("demo", "remember kiwi", mode="long_lived")
            next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), TIMEOUT)
            pid = client.inspect(info.id).pid
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    second = start_daemon(short_tmp, "--grace", "2")
    try:
        with second.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            assert client.inspect(info.id).status is p.SessionStatus.INTERRUPTED
            client.send("and now?", info.id)
            done = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), TIMEOUT)
            again = client.inspect(info.id)
    finally:
        assert second.stop() == 0
    assert isinstance(done, p.Chunk) and not done.is_error
    assert "Turn 2. You said: and now?. Before that you said: remember kiwi." in done.text
    assert again.pid is not None and again.pid != pid  # a new process, the same conversation
    assert pid is not None and (
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    )
