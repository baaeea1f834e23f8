"""The demo agent, run as a real child process, and the demo backend that drives it."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.plugins import demo_panel, demo_voices
from agentplex.plugins.api import Backend, ChunkData, SessionSpec
from agentplex.plugins.demo import DemoBackend
from agentplex.protocol import ChunkKind, Stream
from agentplex.protocol.panels import (
    InsightKind,
    MemberSpec,
    PanelConfig,
    PanelMessage,
    PanelType,
    ParticipantRole,
    Position,
    Stance,
)
from agentplex.supervisor.panels import insights, prompts
from agentplex.supervisor.panels.consensus import parse_position, position_request

DEMO = [sys.executable, "-m", "agentplex.plugins.demo_agent"]
FLAGS = ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]
TIMEOUT = 30.0
INTERRUPTED = "[Request interrupted by user]"

JSON = dict[str, Any]


@dataclass
class Run:
    """What one demo-agent process printed, and how it ended."""

    code: int
    lines: list[JSON]
    stderr: str

    def of_type(self, kind: str) -> list[JSON]:
        return [line for line in self.lines if line["type"] == kind]

    @property
    def result(self) -> JSON:
        [result] = self.of_type("result")
        return result

    @property
    def session_id(self) -> str:
        [session_id] = {line["session_id"] for line in self.lines}
        return str(session_id)

    @property
    def typed(self) -> str:
        return "".join(
            e["event"]["delta"]["text"] for e in self.of_type("stream_event") if is_text_delta(e)
        )


class LineReader:
    """Reads a child's stdout on a thread, so a test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_line(self, predicate: Callable[[JSON], bool], timeout: float = TIMEOUT) -> list[JSON]:
        """Every line up to and including the first that ``predicate`` accepts."""
        seen: list[JSON] = []
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"stdout ended before the awaited line; saw {seen}"
            seen.append(json.loads(line))
            if predicate(seen[-1]):
                return seen

    def wait_eof(self, timeout: float = TIMEOUT) -> list[JSON]:
        """Every remaining line, once stdout is closed."""
        rest: list[JSON] = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            rest.append(json.loads(line))
        return rest


def is_text_delta(line: JSON) -> bool:
    delta = line["event"].get("delta", {}) if line["type"] == "stream_event" else {}
    return bool(delta.get("type") == "text_delta")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AGENTPLEX_DEMO_HOME": str(tmp_path / "demo"),
        "AGENTPLEX_DEMO_DELAY": "0.001",
    }


def run(env: dict[str, str], prompt: str, *extra: str, flags: Iterable[str] = FLAGS) -> Run:
    done = subprocess.run(
        [*DEMO, "-p", prompt, *flags, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Run(
        done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr
    )


# --------------------------------------------------------------------------- the agent


def test_a_turn_is_init_typed_deltas_assistant_and_result(env: dict[str, str]) -> None:
    turn = run(env, "hello there")
    assert turn.code == 0, turn.stderr
    assert turn.lines[0]["type"] == "system"
    assert turn.lines[0]["subtype"] == "init"
    assert turn.lines[0]["model"] == "demo-1"
    assert turn.lines[-1]["type"] == "result"
    [assistant] = turn.of_type("assistant")
    text = turn.result["result"]
    assert assistant["message"]["content"] == [{"type": "text", "text": text}]
    assert assistant["message"]["id"].startswith("msg_demo_")
    assert turn.typed == text
    assert text.startswith("Turn 1. You said: hello there.")
    assert turn.result["subtype"] == "success"
    assert turn.result["is_error"] is False
    assert uuid.UUID(turn.session_id).version == 4


def test_resume_keeps_the_session_and_remembers_the_conversation(env: dict[str, str]) -> None:
    first = run(env, "alpha")
    second = run(env, "bravo", "--resume", first.session_id)
    third = run(env, "charlie", "--resume", second.session_id)
    assert [first.code, second.code, third.code] == [0, 0, 0]
    assert first.session_id == second.session_id == third.session_id
    reply = third.result["result"]
    assert "Turn 3" in reply
    assert "You said: charlie." in reply
    assert "Before that you said: bravo." in reply
    assert third.result["num_turns"] == 3


def test_resuming_an_unknown_conversation_fails_like_claude(env: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    turn = run(env, "hello", "--resume", missing)
    assert turn.code == 1
    assert [line["type"] for line in turn.lines] == ["result"]
    assert turn.result["subtype"] == "error_during_execution"
    assert turn.result["is_error"] is True
    assert turn.result["errors"] == [f"No conversation found with session ID: {missing}"]


def test_sigint_mid_stream_ends_the_turn_gracefully(env: dict[str, str]) -> None:
    with subprocess.Popen(
        [*DEMO, "-p", "go SLOW please", *FLAGS],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        try:
            lines = reader.wait_line(is_text_delta)
            proc.send_signal(signal.SIGINT)
            turn = Run(proc.wait(timeout=TIMEOUT), lines + reader.wait_eof(), "")
        finally:
            proc.kill()
    assert turn.code == 0
    [assistant] = turn.of_type("assistant")
    partial = assistant["message"]["content"][0]["text"]
    assert partial == turn.typed
    assert 0 < len(partial.split()) < 200
    [user] = turn.of_type("user")
    assert user["message"]["content"] == [{"type": "text", "text": INTERRUPTED}]
    assert turn.result["subtype"] == "error_during_execution"
    assert turn.result["is_error"] is True
    assert turn.lines[-1]["type"] == "result"

    after = run(env, "are you still there", "--resume", turn.session_id)
    assert after.code == 0, after.stderr
    assert after.session_id == turn.session_id
    assert after.result["result"].startswith(
        "Turn 2. You said: are you still there. Before that you said: go SLOW please."
    )


def test_crash_exits_3_mid_stream_without_a_result(env: dict[str, str]) -> None:
    turn = run(env, "please CRASH now")
    assert turn.code == 3
    assert turn.typed
    assert turn.of_type("result") == []
    assert "CRASH" in turn.stderr


def test_fail_reports_an_error_result(env: dict[str, str]) -> None:
    turn = run(env, "FAIL this one")
    assert turn.code == 1
    assert turn.result["is_error"] is True
    assert turn.result["api_error_status"] == 500
    assert turn.result["result"].startswith("API Error: 500")


def test_without_partial_messages_there_are_no_stream_events(env: dict[str, str]) -> None:
    turn = run(env, "quiet", flags=["--output-format", "stream-json", "--verbose"])
    assert turn.code == 0
    assert [line["type"] for line in turn.lines] == ["system", "assistant", "result"]


def test_a_prompt_may_look_like_a_flag(env: dict[str, str]) -> None:
    turn = run(env, "--help me")
    assert turn.code == 0, turn.stderr
    assert "You said: --help me." in turn.result["result"]


def test_an_empty_prompt_is_refused(env: dict[str, str]) -> None:
    turn = subprocess.run(
        [*DEMO, "-p", "", *FLAGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert turn.returncode == 2
    assert turn.stdout == ""


# --------------------------------------------------------------------------- the backend


@pytest.fixture
def spec(tmp_path: Path) -> SessionSpec:
    return SessionSpec(
        session_id="s1",
        cwd=tmp_path,
        scratch_dir=tmp_path / "scratch",
        env={"AGENTPLEX_DEMO_DELAY": "0.001"},
    )


def run_backend_turn(
    backend: Backend, spec: SessionSpec, message: str, resume_id: str | None = None
) -> list[ChunkData]:
    env = {**os.environ, **backend.environment(spec)}
    done = subprocess.run(
        backend.argv(spec, message, resume_id),
        env=env,
        cwd=spec.cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    parser = backend.driver(spec)
    return [c for line in done.stdout.splitlines() for c in parser.parse(line, Stream.STDOUT)]


def test_demo_backend_describes_itself() -> None:
    backend = DemoBackend()
    assert isinstance(backend, Backend)
    assert (backend.id, backend.modes) == ("demo", ("turn", "long_lived"))
    assert backend.panel_mode == "long_lived"  # panel members: one process each, fed on stdin
    located = backend.locate()
    assert located.available
    assert located.executable == sys.executable
    assert located.version == importlib.metadata.version("agentplex")


def test_demo_backend_environment_and_argv(spec: SessionSpec) -> None:
    backend = DemoBackend()
    env = backend.environment(spec)
    assert Path(env["AGENTPLEX_DEMO_HOME"]).is_dir()
    assert env["AGENTPLEX_DEMO_DELAY"] == "0.001"
    assert backend.argv(spec, "hi", None) == [*DEMO, "-p", "hi", *FLAGS]
    assert backend.argv(spec, "hi", "abc")[-2:] == ["--resume", "abc"]


def test_demo_backend_encodes_input_as_a_claude_user_line(spec: SessionSpec) -> None:
    line = DemoBackend().driver(spec).encode_input("hello")
    assert line.endswith(b"\n")
    assert json.loads(line) == {"type": "user", "message": {"role": "user", "content": "hello"}}


def test_demo_backend_turns_parse_into_chunks(spec: SessionSpec) -> None:
    backend = DemoBackend()
    first = run_backend_turn(backend, spec, "hello")
    assert first[0].kind is ChunkKind.SYSTEM
    assert first[0].model == "demo-1"
    partial = "".join(c.text for c in first if c.kind is ChunkKind.TEXT and c.partial)
    [full] = [c for c in first if c.kind is ChunkKind.TEXT and not c.partial]
    [result] = [c for c in first if c.kind is ChunkKind.RESULT]
    assert partial == full.text == result.text
    assert result.usage is not None
    assert result.usage.output_tokens > 0
    [cli_session_id] = {c.cli_session_id for c in first}
    assert cli_session_id is not None

    second = run_backend_turn(backend, spec, "again", cli_session_id)
    [result] = [c for c in second if c.kind is ChunkKind.RESULT]
    assert result.text.startswith("Turn 2. You said: again. Before that you said: hello.")
    assert {c.cli_session_id for c in second} == {cli_session_id}


def test_a_print_flag_without_a_prompt_reads_the_prompt_from_stdin(env: dict[str, str]) -> None:
    prompt = "-starts with a dash and spans\nlines " + "x" * 300_000  # no argv could hold it
    done = subprocess.run(
        [*DEMO, *FLAGS, "-p"],
        input=prompt,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    [result] = [line for line in lines if line["type"] == "result"]
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    assert result["result"].startswith(
        f"Turn 1. You said: {len(prompt)} characters with sha256 {digest}."
    )


def test_an_empty_stdin_is_an_empty_prompt_and_refused(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*DEMO, *FLAGS, "-p"],
        stdin=subprocess.DEVNULL,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 2
    assert "the prompt must not be empty" in done.stderr


def test_a_short_prompt_is_repeated_and_a_long_one_told_by_size_and_digest(
    env: dict[str, str],
) -> None:
    short, long = "a" * 1000, "b" * 1001
    first = run(env, short)
    second = run(env, long, "--resume", first.session_id)
    digest = hashlib.sha256(long.encode()).hexdigest()
    assert f"You said: {short}." in first.result["result"]
    assert f"You said: 1001 characters with sha256 {digest}." in second.result["result"]
    assert f"Before that you said: {short}." in second.result["result"]


def test_demo_backend_stdin_turn_runs_the_same_turn_with_the_prompt_on_stdin(
    spec: SessionSpec,
) -> None:
    backend = DemoBackend()
    turn = backend.stdin_turn(spec, "hello", "abc")
    assert turn.argv == [*DEMO, *FLAGS, "--resume", "abc", "-p"]
    assert turn.prompt == b"hello"
    env = {**os.environ, **backend.environment(spec)}
    done = subprocess.run(
        backend.stdin_turn(spec, "from stdin", None).argv,
        input=b"from stdin",
        env=env,
        cwd=spec.cwd,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    parser = backend.driver(spec)
    chunks = [
        c for line in done.stdout.splitlines() for c in parser.parse(line.decode(), Stream.STDOUT)
    ]
    [result] = [c for c in chunks if c.kind is ChunkKind.RESULT]
    assert result.text.startswith("Turn 1. You said: from stdin.")


# --------------------------------------------------------------------------- in a panel
# The prompts are the ones the panel writes (supervisor/panels/prompts.py, consensus.py);
# test_demo_panel.py covers the choices in-process, these the agent as a real process.

PANEL = PanelConfig(
    topic="Move billing to an event queue",
    type=PanelType.DEBATE,
    members=[
        MemberSpec(name="PM", role=ParticipantRole.MODERATOR, stance=Stance.FOR),
        MemberSpec(name="QA", role=ParticipantRole.CRITIC, stance=Stance.AGAINST),
        MemberSpec(name="Specialist", stance=Stance.NEUTRAL),
        MemberSpec(name="Historian", role=ParticipantRole.OBSERVER),
    ],
)
VOICE_WORDS = {
    "PM": ("scope", "plan"),
    "QA": ("break", "risks"),
    "Specialist": ("build", "Implementing"),
    "Historian": ("Historian",),
}


def member(name: str, config: PanelConfig = PANEL) -> MemberSpec:
    return next(m for m in config.members if m.name == name)


def said(participant: str, text: str, n: int = 1) -> PanelMessage:
    return PanelMessage(
        id=f"m{n}", panel_id="p", participant=participant, text=text, ts=0.0, turn=n, round=0
    )


def reply_of(turn: Run) -> str:
    assert turn.code == 0, turn.stderr
    assert turn.typed == turn.result["result"]  # typed word by word, lines and all
    return str(turn.result["result"])


@pytest.mark.parametrize("name", list(VOICE_WORDS))
def test_in_a_panel_the_agent_answers_in_character_instead_of_echoing(
    env: dict[str, str], name: str
) -> None:
    prompt = prompts.first_prompt(PANEL, member(name))
    text = reply_of(run(env, prompt))
    assert any(word in text for word in VOICE_WORDS[name]), text
    assert "You said" not in text and "Panel type" not in text and "Markers:" not in text
    assert len(text.splitlines()) >= 2


def test_with_no_delay_a_reply_streams_a_line_per_delta_and_else_a_word_per_delta(
    env: dict[str, str],
) -> None:
    prompt = prompts.first_prompt(PANEL, member("QA"))
    at_once = run({**env, "AGENTPLEX_DEMO_DELAY": "0"}, prompt)
    typing = run(env, prompt)  # 0.001 s a word
    text = reply_of(at_once)
    assert reply_of(typing) == text  # the same reply either way
    deltas = [e for e in at_once.of_type("stream_event") if is_text_delta(e)]
    lines = [e["event"]["delta"]["text"] for e in deltas]
    assert len(lines) >= 2 and all("\n" in line for line in lines[:-1])  # each ends a line
    assert len(lines) == 1 + sum("\n" in word for word in text.split(" "))
    words = [e for e in typing.of_type("stream_event") if is_text_delta(e)]
    assert len(words) == len(text.split(" ")) > 2 * len(lines)  # typed: a word per delta


def test_the_persona_reaches_the_agent_by_name_or_by_its_instructions(
    env: dict[str, str],
) -> None:
    config = PanelConfig(topic="Rewrite the parser", members=[MemberSpec(name="Alice")])
    prompt = prompts.first_prompt(config, member("Alice", config))
    as_named = reply_of(run({**env, "AGENTPLEX_DEMO_PERSONA": "QA"}, prompt))
    instructions = "You are the QA engineer on this task. Look for what can break."
    as_told = reply_of(run(env, prompt, "--append-system-prompt", instructions))
    plain = reply_of(run(env, prompt))
    for text in (as_named, as_told):
        assert any(word in text for word in VOICE_WORDS["QA"]), text
    assert "Alice" in plain  # no persona: generic, but by name


def test_a_resumed_panel_conversation_builds_on_what_it_heard_and_takes_a_position(
    env: dict[str, str],
) -> None:
    qa = member("QA")
    first = run(env, prompts.first_prompt(PANEL, qa))
    heard = [said("PM", "We ship the smallest slice first.\n@QA, what would you test?")]
    second = run(env, prompts.catch_up(PANEL, qa, heard), "--resume", first.session_id)
    request = position_request("Adopt the event queue this quarter.", veto=False)
    third = run(env, request, "--resume", first.session_id)
    assert reply_of(first) and third.session_id == first.session_id
    answer = reply_of(second).splitlines()[0]
    assert "PM" in answer and '"We ship the smallest slice first."' in answer
    parsed = parse_position(reply_of(third))
    assert parsed is not None and parsed[0] is Position.DISAGREE  # QA argues against
    assert third.result["num_turns"] == 3


def test_a_panel_reply_holds_nothing_it_was_not_told(env: dict[str, str]) -> None:
    """Every word is the demo's own or one of its prompts'; another conversation's words
    (same demo home) never appear, nor the prompt's instructions."""
    vocabulary = set(re.findall(r"[A-Za-z]+", Path(demo_panel.__file__).read_text()))
    vocabulary |= set(re.findall(r"[A-Za-z]+", Path(demo_voices.__file__).read_text()))
    other = PanelConfig(topic="zebrafish husbandry", members=PANEL.members)
    run(env, prompts.first_prompt(other, member("QA", other)))
    qa = member("QA")
    told = [
        prompts.first_prompt(PANEL, qa),
        prompts.catch_up(PANEL, qa, [said("PM", "Heron migrations matter. @Specialist agrees")]),
        prompts.catch_up(PANEL, qa, [said("Historian", "Kestrel data says otherwise.", 2)]),
    ]
    session: list[str] = []
    replies = []
    for prompt in told:
        turn = run(env, prompt, *session)
        session = ["--resume", turn.session_id]
        replies.append(reply_of(turn))
    allowed = vocabulary | set(re.findall(r"[A-Za-z]+", "\n".join(told)))
    for text in replies:
        assert set(re.findall(r"[A-Za-z]+", text)) <= allowed, text
        assert "zebrafish" not in text and "Reply with" not in text
        assert set(insights.mentions(text, ["PM", "QA", "Specialist", "Historian"])) <= {
            "PM",
            "Specialist",
            "Historian",
        }
    quoted = replies[1].splitlines()[0]
    assert "Heron migrations matter." in quoted and "@" not in quoted  # a quote loses its @


def test_each_prompt_received_is_appended_to_the_record_when_asked(
    env: dict[str, str], tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    asked = {**env, "AGENTPLEX_DEMO_RECORD": str(record)}
    big = "x" * 200_000
    procs = [
        subprocess.Popen(
            [*DEMO, *FLAGS, "-p"],
            env={**asked, "AGENTPLEX_SESSION_ID": f"s{i}"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outs = [p.communicate(f"{big}{i}", timeout=TIMEOUT)[0] for i, p in enumerate(procs)]
    first_id = json.loads(outs[0].splitlines()[-1])["session_id"]
    again = run({**asked, "AGENTPLEX_SESSION_ID": "s9"}, "and again", "--resume", first_id)
    assert again.code == 0
    *together, last = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted((x["session"], x["prompt"], x["turn"]) for x in together) == [
        (f"s{i}", f"{big}{i}", 1) for i in range(3)
    ]  # written at once, yet each line whole
    assert isinstance(last.pop("ts"), float)  # when the prompt reached the agent
    assert last == {"session": "s9", "conversation": first_id, "turn": 2, "prompt": "and again"}
    run(env, "not recorded")
    assert len(record.read_text().splitlines()) == 4


def test_the_same_panel_conversation_gets_the_same_replies_in_a_fresh_home(
    env: dict[str, str], tmp_path: Path
) -> None:
    specialist = member("Specialist")
    told = [
        prompts.first_prompt(PANEL, specialist),
        prompts.catch_up(PANEL, specialist, [said("QA", "Concurrency worries me.")]),
        "This is the final round: conclude.",
    ]

    def conversation(home: Path) -> list[str]:
        session: list[str] = []
        replies = []
        for prompt in told:
            turn = run({**env, "AGENTPLEX_DEMO_HOME": str(home)}, prompt, *session)
            session = ["--resume", turn.session_id]
            replies.append(reply_of(turn))
        return replies

    one, two = conversation(tmp_path / "one"), conversation(tmp_path / "two")
    assert one == two
    assert len(set(one)) == 3
    assert [x.kind for x in insights.marked_lines(one[-1])].count(InsightKind.DECISION) == 1


def test_demo_backend_gives_the_persona_to_the_agent(
    spec: SessionSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTPLEX_DEMO_RECORD", str(tmp_path / "daemon.jsonl"))
    monkeypatch.setenv("AGENTPLEX_DEMO_SEED", "7")
    backend = DemoBackend()
    persona = dataclasses.replace(
        spec,
        persona="QA",
        instructions="Look for what can break.",
        env={"AGENTPLEX_DEMO_SEED": "8"},
    )
    env = backend.environment(persona)
    assert env["AGENTPLEX_DEMO_PERSONA"] == "QA"
    assert env["AGENTPLEX_DEMO_RECORD"] == str(tmp_path / "daemon.jsonl")
    assert env["AGENTPLEX_DEMO_SEED"] == "8"  # the session's own wins over the daemon's
    flags = ["--append-system-prompt", "Look for what can break."]
    assert backend.argv(persona, "hi", None) == [*DEMO, "-p", "hi", *FLAGS, *flags]
    assert backend.stdin_turn(persona, "hi", "r").argv == [
        *DEMO,
        *FLAGS,
        *flags,
        "--resume",
        "r",
        "-p",
    ]
    assert "AGENTPLEX_DEMO_PERSONA" not in backend.environment(spec)
    config = PanelConfig(topic="Rewrite the parser", members=[MemberSpec(name="Alice")])
    chunks = run_backend_turn(backend, persona, prompts.first_prompt(config, config.members[0]))
    [result] = [c for c in chunks if c.kind is ChunkKind.RESULT]
    assert any(word in result.text for word in VOICE_WORDS["QA"]), result.text


def test_through_the_daemon_a_demo_member_speaks_in_character_and_its_prompts_are_recorded(
    short_tmp: Path,
) -> None:
    record = short_tmp / "record.jsonl"
    daemon = start_daemon(short_tmp, env={"AGENTPLEX_DEMO_RECORD": str(record)})
    config = PanelConfig(topic="Rewrite the parser", members=[MemberSpec(name="Alice")])
    first = prompts.first_prompt(config, config.members[0])
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start("demo", first, persona="qa")
            opening = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
            client.send("Since your last turn:\nBob (guest): Ship it.\nYour turn, Alice.", info.id)
            answer = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
    finally:
        assert daemon.stop() == 0
    assert isinstance(opening, p.Chunk) and isinstance(answer, p.Chunk)
    assert any(word in opening.text for word in VOICE_WORDS["QA"]), opening.text
    assert answer.text.startswith(("Bob, you said", "On what Bob said"))
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(x["session"], x["turn"]) for x in lines] == [(info.id, 1), (info.id, 2)]
    assert lines[0]["prompt"] == first
