"""The ``agentplex`` command line, run as a real subprocess against a real daemon.

Most tests share one daemon per module (a daemon takes half a second to start) and name
every session by its id, so they pass in any order; the tests about the active session
get a fresh daemon of their own. Sessions a test needs but does not test the CLI with are
made through the client library, which is faster than a CLI process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import msgspec
import pytest
from support import CLI_TIMEOUT, DaemonProcess, fails, is_chunk, next_event, ok, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.transcripts import read_chunks, read_records
from agentplex.plugins.demo_agent import compose
from agentplex.protocol import errors as e

CLI = [sys.executable, "-m", "agentplex.cli.main"]
WAIT = 20.0
CAT = ["--", "cat"]
TYPE_SLOWLY = {"AGENTPLEX_DEMO_DELAY": "0.05"}
"""With a ``SLOW`` prompt the demo agent types 200 words: 10 s at this pace, so a test
has time to act mid-turn (it never waits for the end)."""


# ---------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def shared() -> Iterator[DaemonProcess]:
    """One daemon for the tests that name their sessions by id."""
    base = Path(tempfile.mkdtemp(prefix="apx-"))
    daemon = start_daemon(base, "--grace", "2")
    try:
        yield daemon
    finally:
        code = daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
        assert code == 0, f"daemon exited with {code}: {daemon.log_lines[-5:]}"


def cat(client: Client, tag: str | None = None) -> str:
    """A new exec session running ``cat`` (it echoes each message); returns its id."""
    return client.start("exec", argv=["cat"], tag=tag).id


def ended_demo(daemon: DaemonProcess, prompt: str) -> p.SessionInfo:
    """A demo session that answered ``prompt`` once and was then killed."""
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        sid = client.start("demo", prompt).id
        next_event(events, is_chunk(sid, p.ChunkKind.RESULT))
        return client.terminate(sid).session


def ls_marks(daemon: DaemonProcess) -> dict[str, str]:
    """``agentplex ls``: the mark column (``*`` or blank) by 8-character id prefix."""
    header, *rows = ok(daemon, "ls").splitlines()
    assert header.split()[:3] == ["ID", "BACKEND", "STATUS"]
    return {row[2:10]: row[0] for row in rows}


class Output:
    """A child's stdout, read line by line on a thread, so a test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        """The first line (seen so far or yet to come) that satisfies ``predicate``."""

        def found() -> str | None:
            return next((line for line in self.lines if predicate(line)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self.closed, timeout)
            line = found()
        assert line is not None, f"no matching line within {timeout} s: {self.lines[-5:]}"
        return line

    def wait_closed(self, timeout: float = WAIT) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.closed, timeout), "stdout stayed open"


@contextmanager
def cli_in_background(
    daemon: DaemonProcess, *args: str
) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """``agentplex ARGS`` running while the test goes on; killed afterwards if still running."""
    process = subprocess.Popen(
        [*CLI, *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    output = Output(process.stdout)
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)
        output.wait_closed()
        process.stdout.close()
        process.stderr.close()


# ---------------------------------------------------------------------- start


def test_start_exec_prints_only_the_new_uuid_and_runs_the_command_after_the_dashes(
    shared: DaemonProcess,
) -> None:
    done = shared.cli("start", "--backend", "exec", "--", "sh", "-c", "cat", "ignored-arg0")

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.count("\n") == 1
    sid = done.stdout.strip()
    assert str(uuid.UUID(sid)) == sid
    with shared.client() as client:
        info = client.inspect(sid)
    assert (info.backend, info.status) == ("exec", p.SessionStatus.RUNNING)
    header = next(read_records(info.transcript))
    assert isinstance(header, p.Header)
    assert header.argv == ["sh", "-c", "cat", "ignored-arg0"]


def test_start_json_prints_the_new_sessions_info(shared: DaemonProcess) -> None:
    out = ok(shared, "start", "--backend", "exec", "--json", *CAT)

    assert out.count("\n") == 1
    info = msgspec.json.decode(out, type=p.SessionInfo)
    assert info.backend == "exec"
    assert info.status is p.SessionStatus.RUNNING
    assert info.pid is not None
    assert info.cwd == os.getcwd()
    assert Path(info.transcript).is_file()
    with shared.client() as client:
        assert client.inspect(info.id).pid == info.pid


def test_start_gives_the_session_its_tag_persona_environment_and_cwd(
    shared: DaemonProcess, short_tmp: Path
) -> None:
    script = 'echo "FOO=$FOO EMPTY=[$EMPTY]"; pwd; cat'
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        out = ok(
            shared,
            "start",
            "--backend",
            "exec",
            "--tag",
            "cli-test",
            "--persona",
            "QA",
            "--env",
            "FOO=bar baz",
            "--env",
            "EMPTY=",
            "--cwd",
            str(short_tmp),
            "--json",
            "--",
            "sh",
            "-c",
            script,
        )
        info = msgspec.json.decode(out, type=p.SessionInfo)
        env_line = next_event(events, is_chunk(info.id))
        cwd_line = next_event(events, is_chunk(info.id))

    assert (info.tag, info.persona, info.cwd) == ("cli-test", "QA", str(short_tmp))
    assert isinstance(env_line, p.Chunk) and env_line.text == "FOO=bar baz EMPTY=[]"
    assert isinstance(cwd_line, p.Chunk) and cwd_line.text == str(short_tmp.resolve())
    assert Path(info.transcript).parent == shared.state_dir / "sessions" / "cli-test"


# ---------------------------------------------------------------------- ls, send, switch


def test_ls_is_empty_without_sessions_then_lists_them_oldest_first_starring_the_active(
    daemon: DaemonProcess,
) -> None:
    assert ok(daemon, "ls") == ""
    assert json.loads(ok(daemon, "ls", "--json")) == []
    with daemon.client() as client:
        first, second = cat(client), cat(client, tag="mine")

    rows = ok(daemon, "ls").splitlines()[1:]
    assert [(row[0], row[2:].split()[:3]) for row in rows] == [
        (" ", [first[:8], "exec", "running"]),
        ("*", [second[:8], "exec", "running"]),
    ]
    assert rows[1].endswith("mine")
    listed = json.loads(ok(daemon, "ls", "--json"))
    assert [s["id"] for s in listed] == [first, second]
    assert all(s["backend"] == "exec" and s["status"] == "running" for s in listed)


def test_ended_sessions_leave_ls_after_keep_ended_and_ls_all_still_lists_them(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, env={"AGENTPLEX_KEEP_ENDED": "0"})
    try:
        with daemon.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
            ended = client.start("exec", argv=["echo", "bye"]).id
            running = cat(client)
            # The ended one is evicted: the next list published holds the running one only.
            next_event(
                events,
                lambda ev: isinstance(ev, p.SessionListChanged)
                and [s.id for s in ev.sessions] == [running],
                WAIT,
            )
        assert [s["id"] for s in json.loads(ok(daemon, "ls", "--json"))] == [running]
        rows = ok(daemon, "ls", "--all").splitlines()[1:]
        assert [row[2:].split()[:3] for row in rows] == [
            [ended[:8], "exec", "exited"],
            [running[:8], "exec", "running"],
        ]
        listed = json.loads(ok(daemon, "ls", "-a", "--json"))
        assert [s["id"] for s in listed] == [ended, running]
        assert ok(daemon, "attach", ended[:8]).split() == ["bye"]  # replayed from disk
        assert ok(daemon, "logs", ended[:8]).strip() == listed[0]["transcript"]
        assert "bye" in ok(daemon, "logs", "--cat", ended[:8])
    finally:
        assert daemon.stop() == 0


def test_send_with_a_prefix_writes_the_message_to_that_exec_sessions_stdin(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        target, other = cat(client), cat(client)
        assert ok(shared, "send", "-s", target[:8], "hello target") == ""
        echoed = next_event(
            events, lambda ev: isinstance(ev, p.Chunk) and ev.session_id in (target, other)
        )

    assert isinstance(echoed, p.Chunk)
    assert (echoed.session_id, echoed.text) == (target, "hello target")


def test_send_takes_the_session_before_the_message_as_well_as_with_s(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        first, second = cat(client), cat(client)
        assert ok(shared, "send", first[:8], "by position") == ""
        by_position = next_event(
            events, lambda ev: isinstance(ev, p.Chunk) and ev.session_id in (first, second)
        )
        assert ok(shared, "send", "-s", second[:8], "by flag") == ""
        by_flag = next_event(
            events, lambda ev: isinstance(ev, p.Chunk) and ev.session_id in (first, second)
        )

    assert isinstance(by_position, p.Chunk) and isinstance(by_flag, p.Chunk)
    assert (by_position.session_id, by_position.text) == (first, "by position")
    assert (by_flag.session_id, by_flag.text) == (second, "by flag")


@pytest.mark.parametrize(
    "args",
    [["-s", "abc", "abc", "hello"], ["abc", "hello", "world"]],
    ids=["-s and a session word", "three words"],
)
def test_send_with_a_session_given_twice_or_three_words_is_a_one_line_usage_error(
    shared: DaemonProcess, args: list[str]
) -> None:
    line = fails(shared.cli("send", *args, timeout=CLI_TIMEOUT), e.EXIT_USAGE)
    assert line.startswith("agentplex send: ")


def test_send_help_shows_both_ways_to_name_the_session() -> None:
    done = subprocess.run(
        [*CLI, "send", "--help"], capture_output=True, text=True, timeout=CLI_TIMEOUT, check=True
    )
    assert "agentplex send [-h] [-s SESSION] MESSAGE" in done.stdout
    assert "agentplex send [-h] SESSION MESSAGE" in done.stdout


def test_send_without_a_session_goes_to_the_active_one_which_switch_changes(
    daemon: DaemonProcess,
) -> None:
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        older, newer = cat(client), cat(client)
        assert ls_marks(daemon) == {older[:8]: " ", newer[:8]: "*"}
        ok(daemon, "send", "to the newest")
        to_newest = next_event(events, is_chunk(newer, text="to the newest"))
        assert ok(daemon, "switch", older[:6]) == ""
        assert ls_marks(daemon) == {older[:8]: "*", newer[:8]: " "}
        ok(daemon, "send", "to the switched one")
        to_older = next_event(events, lambda ev: isinstance(ev, p.Chunk))

    assert isinstance(to_newest, p.Chunk) and to_newest.session_id == newer
    assert isinstance(to_older, p.Chunk)
    assert (to_older.session_id, to_older.text) == (older, "to the switched one")


# ---------------------------------------------------------------------- attach


def test_attach_prints_the_whole_conversation_of_an_ended_demo_session(
    shared: DaemonProcess,
) -> None:
    info = ended_demo(shared, "hello from the attach test")

    out = ok(shared, "attach", info.id[:8])

    assert out.startswith("[system] init: model demo-1\n")
    reply = [
        c.text for c in read_chunks(info.transcript) if c.kind is p.ChunkKind.TEXT and not c.partial
    ]
    assert len(reply) == 1
    assert reply[0].startswith("Turn 1. You said: hello from the attach test.")
    assert f"\n{reply[0]}\n" in out
    assert out.splitlines()[-1].startswith("[result] ok, ")


def test_attach_json_prints_every_chunk_once_in_seq_order_and_from_starts_later(
    shared: DaemonProcess,
) -> None:
    info = ended_demo(shared, "number my chunks")

    chunks = [
        p.event_decoder.decode(line)
        for line in ok(shared, "attach", "--json", info.id).splitlines()
    ]
    later = ok(shared, "attach", "--json", "--from", "5", info.id).splitlines()

    assert [c.seq for c in chunks] == list(range(1, info.chunks + 1))  # type: ignore[union-attr]
    assert chunks == list(read_chunks(info.transcript))
    assert [json.loads(line)["seq"] for line in later] == list(range(5, info.chunks + 1))


def test_attach_to_a_live_session_prints_history_then_live_chunks_and_exits_when_killed(
    shared: DaemonProcess,
) -> None:
    prompt = "SLOW: type a long answer"
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        sid = client.start("demo", prompt, env=TYPE_SLOWLY).id
        next_event(events, is_chunk(sid, p.ChunkKind.TEXT))
        with cli_in_background(shared, "attach", "--json", sid[:8]) as (attach, output):
            output.wait_for(lambda line: '"text":"Turn"' in line)
            seen_so_far = client.inspect(sid).chunks
            output.wait_for(lambda line: json.loads(line)["seq"] > seen_so_far)
            killed = msgspec.json.decode(ok(shared, "kill", "--json", sid), type=p.SessionInfo)
            assert attach.wait(timeout=WAIT) == 0
            output.wait_closed()
            assert attach.stderr is not None and attach.stderr.read() == ""

    chunks = [json.loads(line) for line in output.lines]
    assert [c["seq"] for c in chunks] == list(range(1, killed.chunks + 1))
    assert chunks[0]["text"] == "init: model demo-1"
    typed = "".join(c["text"] for c in chunks if c.get("partial"))
    assert typed.startswith("Turn 1.")
    assert " ".join(compose(prompt, [])).startswith(typed)


# ---------------------------------------------------------------------- interrupt, kill


def test_interrupt_returns_a_slow_demo_turn_to_idle_and_the_next_send_is_turn_2(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        sid = client.start("demo", "SLOW: please take your time", env=TYPE_SLOWLY).id
        next_event(events, is_chunk(sid, p.ChunkKind.TEXT))

        assert ok(shared, "interrupt", sid[:8]) == ""
        note = next_event(events, is_chunk(sid, p.ChunkKind.SYSTEM, "turn 1 interrupted"))
        next_event(
            events,
            lambda ev: (
                isinstance(ev, p.StatusChanged)
                and ev.session_id == sid
                and ev.status is p.SessionStatus.IDLE
            ),
        )
        ok(shared, "send", "-s", sid[:8], "are you still there?")
        reply = next_event(events, is_chunk(sid, p.ChunkKind.TEXT, "Turn 2"))

    assert isinstance(note, p.Chunk) and note.stream is p.Stream.DAEMON
    assert isinstance(reply, p.Chunk) and not reply.partial
    assert reply.text.startswith("Turn 2. You said: are you still there?")


def test_kill_exits_zero_quietly_and_kill_json_prints_the_terminated_session(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client:
        quiet, loud = cat(client), cat(client)

        assert ok(shared, "kill", quiet[:8]) == ""
        out = ok(shared, "kill", "--json", loud)

        assert client.inspect(quiet).status is p.SessionStatus.TERMINATED
    info = msgspec.json.decode(out, type=p.SessionInfo)
    assert (info.id, info.status) == (loud, p.SessionStatus.TERMINATED)
    assert info.ended_reason == "terminated by request"
    assert info.pid is None


# ---------------------------------------------------------------------- events


def test_events_json_prints_ndjson_including_created_and_chunks_of_a_new_session(
    shared: DaemonProcess,
) -> None:
    with (
        shared.client() as client,
        cli_in_background(shared, "events", "--json") as (
            events,
            output,
        ),
    ):
        sid = _start_until_events_sees_it(client, output)
        output.wait_for(lambda line: _is(line, "agent.chunk", sid, text="hello events"))
        events.send_signal(signal.SIGINT)
        assert events.wait(timeout=WAIT) == 130
        output.wait_closed()

    assert output.lines
    for line in output.lines:
        decoded = json.loads(line)
        assert isinstance(decoded, dict) and "type" in decoded
        assert p.encode(p.event_decoder.decode(line)) == line.strip().encode()


def _start_until_events_sees_it(client: Client, output: Output) -> str:
    """Start sessions until ``events`` reports one's creation (its subscription may not be
    live yet when the first starts); returns the id of the session it saw."""
    for _attempt in range(5):
        sid = client.start("exec", argv=["sh", "-c", "echo hello events; cat"]).id
        try:
            output.wait_for(lambda line, sid=sid: _is(line, "session.created", sid), 2.0)
        except AssertionError:
            continue
        return sid
    raise AssertionError(f"events printed no session.created: {output.lines[-5:]}")


def _is(line: str, kind: str, session_id: str, text: str | None = None) -> bool:
    event = json.loads(line)
    if event["type"] != kind:
        return False
    sid = event["session"]["id"] if "session" in event else event.get("session_id")
    return sid == session_id and (text is None or event.get("text") == text)


# ---------------------------------------------------------------------- logs, backends


def test_logs_prints_the_transcript_path_under_sessions_tag_in_the_state_dir(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client:
        tagged, untagged = cat(client, tag="logs-test"), cat(client)

    for sid, tag in ((tagged, "logs-test"), (untagged, "untagged")):
        out = ok(shared, "logs", sid[:8])
        assert out.count("\n") == 1
        path = Path(out.strip())
        assert path.is_file()
        assert path.parent == shared.state_dir / "sessions" / tag
        assert re.fullmatch(rf"{sid}-\d{{8}}T\d{{6}}Z\.jsonl", path.name), path.name


def test_logs_cat_prints_the_records_from_header_to_footer_of_an_ended_session(
    shared: DaemonProcess,
) -> None:
    with shared.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        sid = cat(client)
        client.send("a line for the log", sid)
        next_event(events, is_chunk(sid, text="a line for the log"))
        client.terminate(sid)

    records = [
        p.record_decoder.decode(line) for line in ok(shared, "logs", "--cat", sid).splitlines()
    ]

    first, last = records[0], records[-1]
    assert isinstance(first, p.Header) and (first.session_id, first.argv) == (sid, ["cat"])
    assert isinstance(last, p.Footer) and last.status is p.SessionStatus.TERMINATED
    assert p.MessageIn in {type(r) for r in records}
    texts = [c.text for r in records if isinstance(r, p.Chunk | p.ChunkBatch) for c in p.expand(r)]
    assert texts == ["a line for the log"]
    assert records == list(read_records(Path(ok(shared, "logs", sid).strip())))


def test_backends_lists_exec_and_demo_as_available(shared: DaemonProcess) -> None:
    header, *lines = ok(shared, "backends").splitlines()
    assert header.split() == ["BACKEND", "MODES", "STATUS", "VERSION", "WHERE"]
    # one row per backend; indented lines under a row (its credentials) belong to it
    rows = {line.split()[0]: line.split() for line in lines if not line.startswith(" ")}
    infos = msgspec.json.decode(ok(shared, "backends", "--json"), type=list[p.BackendInfo])

    assert "ok" in rows["exec"] and "ok" in rows["demo"]
    available = {b.id for b in infos if b.available}
    assert {"exec", "demo"} <= available
    assert set(rows) == {b.id for b in infos}


def test_backends_and_personas_say_what_each_permission_policy_does(
    shared: DaemonProcess,
) -> None:
    listing = ok(shared, "backends", "--policies")
    infos = msgspec.json.decode(ok(shared, "backends", "--json"), type=list[p.BackendInfo])
    by_id = {b.id: b for b in infos}

    assert set(by_id["claude"].policies) == {"ask", "allow", "deny"}
    assert "--mode long_lived" not in by_id["codex"].policies["ask"]  # its own words, not claude's
    assert "--permission-mode dontAsk" in by_id["claude"].policies["deny"]
    assert "no permission requests" in by_id["exec"].policies["deny"]
    assert by_id["claude"].policies["deny"] in listing
    assert "no permission requests" not in ok(shared, "backends")  # only with --policies

    personas = ok(shared, "personas")
    pm_policy = by_id["claude"].policies["deny"]
    assert f"policy deny: {pm_policy}" in personas  # the PM persona: deny, on claude


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (["send", "-s", "zzzz", "hi"], e.EXIT_NOT_FOUND, "no session matches 'zzzz'"),
        (["attach", "zzzz"], e.EXIT_NOT_FOUND, "no session matches"),
        (["switch", "zzzz"], e.EXIT_NOT_FOUND, "no session matches"),
        (["start", "--backend", "nope", "hi"], e.EXIT_USAGE, "unknown backend 'nope'"),
        (["start", "--backend", "demo", ""], e.EXIT_USAGE, "empty"),
        (["start", "--backend", "demo"], e.EXIT_USAGE, "empty"),
        (["start", "--backend", "exec", "--tag", "../x", *CAT], e.EXIT_USAGE, "invalid tag"),
        (["start", "--cwd", "/no/such/dir", "hi"], e.EXIT_USAGE, "/no/such/dir"),
        (["start", "--cwd", __file__, "hi"], e.EXIT_USAGE, "not a directory"),
        (["start", "--env", "NOEQUALS", "hi"], e.EXIT_USAGE, "KEY=VALUE"),
        (["start", "--backend", "exec"], e.EXIT_USAGE, "needs a command"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_refused_command_prints_one_line_and_exits_with_its_documented_code(
    shared: DaemonProcess, args: list[str], exit_code: int, says: str
) -> None:
    line = fails(shared.cli(*args, timeout=CLI_TIMEOUT), exit_code)
    assert line.startswith(f"agentplex {args[0]}: ")
    assert says in line


def test_an_ambiguous_prefix_exits_2_naming_the_matches(shared: DaemonProcess) -> None:
    with shared.client() as client:
        ids = [info.id for info in client.list().sessions]
        while not (shared_first := _shared_first_character(ids)):
            ids.append(cat(client))

    line = fails(shared.cli("send", "-s", shared_first, "hi"), e.EXIT_USAGE)

    assert f"'{shared_first}' matches" in line


def _shared_first_character(ids: list[str]) -> str | None:
    firsts = [sid[0] for sid in ids]
    return next((c for c in firsts if firsts.count(c) > 1), None)


def test_send_to_an_ended_session_exits_4(shared: DaemonProcess) -> None:
    with shared.client() as client, client.subscribe(p.SESSION_TOPIC) as events:
        sid = client.start("exec", argv=["true"]).id
        next_event(events, lambda ev: isinstance(ev, p.SessionTerminated) and ev.session.id == sid)

    line = fails(shared.cli("send", "-s", sid, "too late"), e.EXIT_CONFLICT)

    assert "has ended" in line


def test_commands_for_the_active_session_exit_3_when_there_is_none(
    daemon: DaemonProcess,
) -> None:
    for command in (["send", "hi"], ["kill"], ["attach"]):
        line = fails(daemon.cli(*command, timeout=CLI_TIMEOUT), e.EXIT_NOT_FOUND)
        assert line.startswith(f"agentplex {command[0]}: ")
        assert "no session is active" in line


def test_a_second_daemon_on_the_same_runtime_dir_exits_4_and_the_first_keeps_serving(
    shared: DaemonProcess,
) -> None:
    line = fails(shared.cli("daemon", timeout=CLI_TIMEOUT), e.EXIT_CONFLICT)

    assert line.startswith("agentplex daemon: ")
    assert f"already running on {shared.runtime_dir} (pid {shared.process.pid})" in line
    assert shared.process.poll() is None
    ok(shared, "ls")


@pytest.mark.parametrize("command", [["ls"], ["start", "hi"], ["events"]], ids=" ".join)
def test_without_a_daemon_a_command_exits_69_saying_how_to_start_one(
    short_tmp: Path, command: list[str]
) -> None:
    env = dict(os.environ, AGENTPLEX_RUNTIME_DIR=str(short_tmp))
    done = subprocess.run(
        [*CLI, *command], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )

    line = fails(done, e.EXIT_UNAVAILABLE)
    assert f"start one with: agentplex daemon --runtime-dir {short_tmp}" in line


def test_a_stale_socket_left_by_a_dead_daemon_exits_69(short_tmp: Path) -> None:
    (short_tmp / "control.sock").touch()
    (short_tmp / "daemon.lock").write_text("")
    env = dict(os.environ, AGENTPLEX_RUNTIME_DIR=str(short_tmp))
    done = subprocess.run(
        [*CLI, "ls"], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )

    assert "stale socket" in fails(done, e.EXIT_UNAVAILABLE)


# ---------------------------------------------------------------------- help


def test_the_top_level_help_shows_examples_exit_codes_and_the_dashes_convention() -> None:
    done = subprocess.run(
        [*CLI, "--help"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=dict(os.environ, COLUMNS="200"),
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert "examples:" in done.stdout
    assert "exit codes: 0 ok, 2 bad input, 3 no such session" in done.stdout
    assert "agentplex start --backend exec --tag build -- make -j2" in done.stdout


def test_start_help_says_the_exec_command_goes_after_the_dashes() -> None:
    done = subprocess.run(
        [*CLI, "start", "--help"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=dict(os.environ, COLUMNS="200"),
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert "give the command after --" in done.stdout
    assert "--env KEY=VALUE" in done.stdout
