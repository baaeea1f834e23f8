"""What the ``agentplex`` command line takes from its user beyond its arguments: a prompt or
a message too big for one command-line argument comes from standard input (``-``).

Linux takes at most 128 KiB in one argument, so ``agentplex start "$(cat big.log)"`` fails
in the shell before agentplex runs; ``agentplex start - < big.log`` must reach the agent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import CLI_TIMEOUT, DaemonProcess, became, fails, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client.transcripts import read_records
from agentplex.protocol import errors as e

CLI = [sys.executable, "-m", "agentplex.cli.main"]
BIG = 300_000
"""Over the 128 KiB (131,072 bytes) that one argument of execve may hold."""
WAIT = 60.0


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(short_tmp)
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0


def cli_with_input(
    daemon: DaemonProcess, text: bytes, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``agentplex ARGS`` with ``text`` on its standard input."""
    done = subprocess.run(
        [*CLI, *args], input=text, env=daemon.env, capture_output=True, timeout=CLI_TIMEOUT
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def messages_in(transcript: str) -> list[str]:
    return [r.text for r in read_records(Path(transcript)) if isinstance(r, p.MessageIn)]


def test_start_and_send_take_a_prompt_too_big_for_argv_from_stdin_with_a_dash(
    daemon: DaemonProcess,
) -> None:
    prompt = "word " * (BIG // 5)
    message = "more " * (BIG // 5)
    with daemon.client() as client, client.subscribe(p.SESSION_TOPIC.decode()) as events:
        started = cli_with_input(daemon, f"{prompt}\n".encode(), "start", "-b", "demo", "-")
        assert (started.returncode, started.stderr) == (0, ""), started.stderr
        session_id = started.stdout.strip()
        next_event(events, became(session_id, p.SessionStatus.IDLE), WAIT)

        sent = cli_with_input(daemon, message.encode(), "send", session_id[:8], "-")
        assert (sent.returncode, sent.stderr) == (0, ""), sent.stderr
        next_event(events, became(session_id, p.SessionStatus.IDLE), WAIT)
        info = client.inspect(session_id)

    # The whole text, less the newline a file or `echo` ends it with, as `$(cat file)` reads.
    assert messages_in(info.transcript) == [prompt.rstrip("\n"), message]
    assert info.turns == 2


def test_an_empty_or_undecodable_stdin_is_refused_in_one_line(daemon: DaemonProcess) -> None:
    assert "empty" in fails(cli_with_input(daemon, b"\n", "start", "-b", "demo", "-"), 2)
    line = fails(cli_with_input(daemon, b"caf\xe9\n", "start", "-b", "demo", "-"), 2)
    assert "standard input" in line and "UTF-8" in line


def test_start_help_says_how_to_give_a_big_prompt() -> None:
    done = subprocess.run([*CLI, "start", "--help"], capture_output=True, text=True, timeout=60)
    assert "'-'" in done.stdout and "standard input" in done.stdout
    done = subprocess.run([*CLI, "send", "--help"], capture_output=True, text=True, timeout=60)
    assert "'-'" in done.stdout and "standard input" in done.stdout


@pytest.mark.parametrize("turns", ["0", "-1"])
def test_demo_refuses_a_number_of_turns_below_one(short_tmp: Path, turns: str) -> None:
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(short_tmp / "run"),
        AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
    )
    done = subprocess.run(
        [*CLI, "demo", "--turns", turns], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == e.EXIT_USAGE, done
    assert f"--turns: expected a whole number of turns, 1 or more, got {turns!r}" in done.stderr
    assert not (short_tmp / "run").exists()  # refused before any daemon started
