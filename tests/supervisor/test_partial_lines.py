"""Output without a trailing newline (a prompt) is shown after a short pause, as a fragment
that the rest of its line continues; and what agents print cannot drive the terminal."""

from __future__ import annotations

import io
import os
import selectors
import subprocess
import sys
import time

from support import DaemonProcess, is_chunk, next_event

from agentplex import protocol as p
from agentplex.cli.render import ChunkPrinter, visible
from agentplex.client import Client
from agentplex.client.transcripts import read_chunks
from agentplex.supervisor.output import LineSplitter

PROMPT = "Continue? [y/N] "
ASKS = f'printf "{PROMPT}"; read answer; echo "got $answer"'
SHOWN_WITHIN = 15.0
"""Seconds a prompt may take to show: it is due after 0.1 s, the rest is a loaded machine."""


def _ended(events: object, session_id: str) -> None:
    def match(event: p.Event) -> bool:
        return isinstance(event, p.SessionTerminated) and event.session.id == session_id

    next_event(events, match, timeout=30)  # type: ignore[arg-type]


def test_a_prompt_without_newline_reaches_subscribers_and_its_line_goes_on_after_the_answer(
    client: Client,
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=["bash", "-c", ASKS])
        prompt = next_event(events, is_chunk(info.id), timeout=SHOWN_WITHIN)
        assert isinstance(prompt, p.Chunk)
        assert (prompt.text, prompt.kind, prompt.partial) == (PROMPT, p.ChunkKind.RAW, True)
        client.send("y", info.id)
        rest = next_event(events, is_chunk(info.id), timeout=SHOWN_WITHIN)
        assert isinstance(rest, p.Chunk) and (rest.text, rest.partial) == ("got y", False)
        _ended(events, info.id)
    # Byte-exact: each chunk's text, and a newline after each that ends its line.
    logged = list(read_chunks(info.transcript))
    output = "".join(c.text + ("" if c.partial else "\n") for c in logged)
    assert output == f"{PROMPT}got y\n"
    assert [c.seq for c in client.follow(info.id)] == [c.seq for c in logged]


def test_the_python_prompt_of_the_readme_example_shows_before_any_input(client: Client) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-i", "-q"])
        try:
            prompt = next_event(events, is_chunk(info.id), timeout=SHOWN_WITHIN)
            assert isinstance(prompt, p.Chunk)
            assert (prompt.text, prompt.stream, prompt.partial) == (">>> ", p.Stream.STDERR, True)
            client.send("print(6 * 7)", info.id)
            answer = next_event(events, is_chunk(info.id, text="42"), timeout=SHOWN_WITHIN)
            assert isinstance(answer, p.Chunk) and answer.stream is p.Stream.STDOUT
        finally:
            client.terminate(info.id)


def _read_until(process: subprocess.Popen[bytes], wanted: bytes, timeout: float) -> bytes:
    """What ``process`` printed, read until it holds ``wanted`` or ``timeout`` passes."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while wanted not in seen and (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                data = process.stdout.read()
                if not data:
                    break
                seen += data
    return seen


def test_attach_shows_a_prompt_still_waiting_for_its_answer(
    daemon: DaemonProcess, client: Client
) -> None:
    info = client.start("exec", argv=["bash", "-c", ASKS])
    with subprocess.Popen(
        [sys.executable, "-m", "agentplex.cli.main", "attach", info.id],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as attach:
        try:
            shown = _read_until(attach, PROMPT.encode(), SHOWN_WITHIN + 10)
            assert shown == PROMPT.encode()  # no newline: the answer goes on the same line
            client.send("n", info.id)
            shown += _read_until(attach, b"got n\n", SHOWN_WITHIN)
            assert shown == f"{PROMPT}got n\n".encode()
            assert attach.wait(timeout=30) == 0  # the session ended: attach is done
        finally:
            attach.kill()


def test_a_partial_line_waits_for_the_rest_of_a_character_it_cuts() -> None:
    splitter = LineSplitter(1 << 20)
    euro = "€".encode()
    assert splitter.feed(b"price: " + euro[:2]) == []
    assert splitter.take_unfinished() == [(b"price: ", True)]  # valid UTF-8, not a split €
    assert not splitter.holding  # only the incomplete character is left: nothing to show
    assert splitter.take_unfinished() == []
    assert splitter.feed(euro[2:] + b"5\n") == [(euro + b"5", False)]


ESCAPES = "\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b[2J\rgone\x9b\u202eevil"


def test_escape_sequences_from_an_agent_are_shown_never_sent_to_the_terminal(
    daemon: DaemonProcess, client: Client
) -> None:
    program = f"import sys; sys.stdout.write({ESCAPES!r} + '\\n')"
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", program])
        _ended(events, info.id)
    safe = daemon.cli("attach", info.id)
    assert safe.returncode == 0, safe.stderr
    assert safe.stdout == "^[[31mred^[[0m ^[]0;pwned^G ^[[2J^Mgone<U+009B><U+202E>evil\n"
    colored = daemon.cli("attach", "--color", info.id)
    assert colored.stdout.startswith("\x1b[31mred\x1b[0m ^[]0;pwned^G ^[[2J")  # colours only
    for shown in (daemon.cli("logs", "--cat", info.id), daemon.cli("attach", "--json", info.id)):
        assert shown.returncode == 0, shown.stderr
        assert not any(c in shown.stdout for c in "\x1b\x07\r\x9b\u202e"), shown.stdout


def test_stream_deltas_and_line_fragments_print_as_one_line_each() -> None:
    out = io.StringIO()
    printer = ChunkPrinter(out)
    say = p.Stream.STDOUT
    for chunk in (
        p.Chunk(p.ChunkKind.TEXT, "Hel", partial=True, stream=say),  # a driver's deltas...
        p.Chunk(p.ChunkKind.TEXT, "lo", partial=True, stream=say),
        p.Chunk(p.ChunkKind.TEXT, "Hello", stream=say),  # ...then the whole text: not again
        p.Chunk(p.ChunkKind.RAW, "Name? ", partial=True, stream=say),  # a line's fragment...
        p.Chunk(p.ChunkKind.TEXT, "Ann", stream=say),  # ...and its rest
    ):
        printer.print(chunk)
    printer.close()
    assert out.getvalue() == "Hello\nName? Ann\n"
    assert visible("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
