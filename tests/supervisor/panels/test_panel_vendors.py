"""A panel of real agents from three vendors: Claude Code, Codex and Gemini CLI, each run by
the real daemon against its fake model API, discuss in turns. What each fake API receives on
a member's second turn must hold the other two members' first replies, with their names.

Each fake answers with a scripted reply that names its vendor and the turn, so a reply found
in another member's prompt can only have come through the panel.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.anthropic_api import FakeAnthropic
from fakes.clis import codex_config, gemini_settings
from fakes.gemini_api import FakeGemini
from fakes.openai_responses import FakeOpenAIResponses
from fakes.server import Conversation, FakeServer, ToolReply
from support import DaemonProcess, next_event, start_daemon

from agentplex import protocol as p
from agentplex.cli.panel import parse_member
from agentplex.protocol.panels import PanelConfig, PanelMessage, RoundShape, StopReason

DEADLINE = 150.0
"""Six turns of cold CLIs (Gemini's Node start-up is the slowest) on a loaded 2-core machine."""
KEY = "sk-test-panel-vendors"
MEMBERS = ("PM:claude", "QA:codex", "Specialist:gemini")
"""As ``panel create --member`` takes them: each persona's name is the member's name."""
WORDS = {"claude": "kiwi", "codex": "mango", "gemini": "papaya"}
"""A word per vendor, so each member's replies are told apart at a glance."""
CREDENTIALS = (
    *("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"),
    *("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "OPENAI_BASE_URL"),
    *("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
)


def scripted_reply(vendor: str) -> Callable[[Conversation], str]:
    """``<vendor> reply <n>: <word> …``; n counts the prompts, so turn 2 of a resumed
    conversation says 2."""
    return lambda c: f"{vendor} reply {len(c.prompts)}: {WORDS[vendor]} is my point."


@dataclass
class Fakes:
    """One fake API per vendor, by backend id."""

    by_backend: dict[str, FakeServer]

    def second_turn(self, backend: str) -> Conversation:
        """The request of the member's second turn, as its fake received it."""
        fake = self.by_backend[backend]
        found = [c for c in map(fake.conversation, fake.model_requests()) if len(c.prompts) == 2]
        assert found, f"{backend}: no second turn among {len(fake.model_requests())} requests"
        return found[0]

    def first_prompt(self, backend: str) -> str:
        fake = self.by_backend[backend]
        first = [c for c in map(fake.conversation, fake.model_requests()) if len(c.prompts) == 1]
        assert first, f"{backend}: no first turn"
        return first[0].prompts[0]


@pytest.fixture(autouse=True)
def _no_credentials_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon inherits the test's environment: only the fakes' credentials may reach it."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    made: dict[str, FakeServer] = {
        "claude": FakeAnthropic(),
        "codex": FakeOpenAIResponses(),
        "gemini": FakeGemini(),
    }
    for backend, fake in made.items():
        fake.script = scripted_reply(backend)
        fake.start()
    try:
        yield Fakes(made)
    finally:
        for fake in made.values():
            fake.stop()


def credentials(fakes: Fakes, home: Path) -> dict[str, str]:
    """The daemon's environment for the three CLIs: each pointed at its fake (Codex by a
    config file under CODEX_HOME, Gemini by API-key auth chosen in ~/.gemini)."""
    codex_home = home / "codex-home"
    codex_home.mkdir(parents=True)
    config = codex_config(fakes.by_backend["codex"].url)
    (codex_home / "config.toml").write_text(config.replace("FAKE_OPENAI_API_KEY", "OPENAI_API_KEY"))
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(gemini_settings()))
    return {
        "HOME": str(home),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fakes.by_backend["claude"].url,
        "OPENAI_API_KEY": KEY,
        "CODEX_HOME": str(codex_home),
        "GEMINI_API_KEY": KEY,
        "GOOGLE_GEMINI_BASE_URL": fakes.by_backend["gemini"].url,
    }


@pytest.fixture
def vendor_daemon(
    short_tmp: Path, agent_clis: dict[str, Path], fakes: Fakes
) -> Iterator[DaemonProcess]:
    """A daemon whose claude/codex/gemini backends run the real CLIs against the fakes."""
    env = {f"AGENTPLEX_{name.upper()}_CLI": str(path) for name, path in agent_clis.items()}
    env.update(credentials(fakes, short_tmp / "home"))
    daemon = start_daemon(short_tmp, "--grace", "2", env=env)
    try:
        yield daemon
    finally:
        code = daemon.stop()
        assert code == 0, f"daemon exited with {code}: {daemon.log_lines[-5:]}"


def run_panel(
    daemon: DaemonProcess,
    project: Path,
    shape: RoundShape,
    members: tuple[str, ...] = MEMBERS,
    rounds: int = 2,
) -> list[PanelMessage]:
    """Create the panel (by default the three vendors for two rounds); its messages once it
    has ended."""
    config = PanelConfig(
        topic="Ship the beta on Friday?",
        members=[parse_member(text) for text in members],
        shape=shape,
        max_rounds=rounds,
        cwd=str(project),
    )
    with daemon.client(timeout=30) as client, client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(config)
        end = next_event(
            events, lambda e: isinstance(e, p.PanelEnded) and e.panel_id == info.id, DEADLINE
        )
        messages = client.panel_show(info.id).messages
    assert isinstance(end, p.PanelEnded)
    assert end.stop_reason is StopReason.MAX_ROUNDS, [m.text for m in messages]
    return messages


def named(member: str, backend: str, turn: int = 1) -> str:
    """How a member's reply is shown to the others: ``Name (role): text``."""
    return f"{member} (expert): {backend} reply {turn}: {WORDS[backend]} is my point."


def test_each_members_second_turn_carries_the_others_first_replies_by_name(
    vendor_daemon: DaemonProcess, fakes: Fakes, short_tmp: Path
) -> None:
    project = short_tmp / "project"
    project.mkdir()
    messages = run_panel(vendor_daemon, project, RoundShape.SEQUENTIAL)

    said = [(m.participant, m.round, m.text) for m in messages]
    assert said == [
        ("PM", 0, "claude reply 1: kiwi is my point."),
        ("QA", 0, "codex reply 1: mango is my point."),
        ("Specialist", 0, "gemini reply 1: papaya is my point."),
        ("PM", 1, "claude reply 2: kiwi is my point."),
        ("QA", 1, "codex reply 2: mango is my point."),
        ("Specialist", 1, "gemini reply 2: papaya is my point."),
    ]
    members = {"PM": "claude", "QA": "codex", "Specialist": "gemini"}
    for member, backend in members.items():
        received = "\n".join(m.text for m in fakes.second_turn(backend).messages)
        for other, other_backend in members.items():
            if other != member:
                assert named(other, other_backend) in received, (member, other, received)
    # Sequential: the newest prompt holds what the others said since the member's last turn,
    # named, and nothing of its own (its own conversation continues through its resume id).
    assert newest(fakes, "claude") == [named("QA", "codex"), named("Specialist", "gemini")]
    assert newest(fakes, "codex") == [named("Specialist", "gemini"), named("PM", "claude", 2)]
    assert newest(fakes, "gemini") == [named("PM", "claude", 2), named("QA", "codex", 2)]
    assert "reply" not in fakes.first_prompt("claude")  # the first speaker saw no one yet
    assert named("PM", "claude") in fakes.first_prompt("codex")


def test_simultaneous_rounds_carry_exactly_the_others_previous_answers_by_name(
    vendor_daemon: DaemonProcess, fakes: Fakes, short_tmp: Path
) -> None:
    # Du et al. 2023: round 0 blind; round 1 holds the other two members' round-0 answers,
    # named, and neither the member's own answer nor any round-1 text.
    project = short_tmp / "project"
    project.mkdir()
    messages = run_panel(vendor_daemon, project, RoundShape.SIMULTANEOUS)

    members = {"PM": "claude", "QA": "codex", "Specialist": "gemini"}
    said = sorted((m.round, m.participant, m.text) for m in messages)
    assert said == sorted(
        (turn - 1, member, f"{backend} reply {turn}: {WORDS[backend]} is my point.")
        for member, backend in members.items()
        for turn in (1, 2)
    )
    for member, backend in members.items():
        first = fakes.first_prompt(backend)
        assert not any(word in first for word in WORDS.values()), first  # blind
        second = fakes.second_turn(backend).prompts[-1]
        assert second.startswith("Round 1. The other members' answers to round 0:\n"), second
        shown = [line for line in second.splitlines() if " (expert): " in line]
        others = [named(o, ob) for o, ob in members.items() if o != member]
        assert sorted(shown) == sorted(others), second
        assert WORDS[backend] not in second  # never its own answer
        assert "reply 2" not in second  # nothing of round 1


def newest(fakes: Fakes, backend: str) -> list[str]:
    """The message lines of the member's second prompt (after ``Since your last turn:``)."""
    prompt = fakes.second_turn(backend).prompts[-1]
    head, *lines = prompt.splitlines()
    assert head == "Since your last turn:", prompt
    return [line for line in lines if " (expert): " in line]


def test_a_members_tool_calls_stay_in_its_transcript_and_only_its_final_text_is_said(
    vendor_daemon: DaemonProcess, fakes: Fakes, short_tmp: Path
) -> None:
    # Codex runs a command (its read-only sandbox lets it read) before it answers: the
    # panel hears the turn's final text only, never the text before the call or the output.
    fakes.by_backend["codex"].script = lambda c: ToolReply("echo mango-tool-output")
    project = short_tmp / "project"
    project.mkdir()
    messages = run_panel(
        vendor_daemon, project, RoundShape.SEQUENTIAL, members=("QA:codex", "PM:claude"), rounds=1
    )

    assert [(m.participant, m.text) for m in messages] == [
        ("QA", "Tool said: mango-tool-output"),
        ("PM", "claude reply 1: kiwi is my point."),
    ]
    assert any(  # the command did run, in QA's own conversation
        m.role == "tool_result" and "mango-tool-output" in m.text
        for c in map(fakes.by_backend["codex"].conversation, fakes.by_backend["codex"].requests)
        for m in c.messages
    )
    told = fakes.first_prompt("claude")
    assert "QA (expert): Tool said: mango-tool-output" in told
    assert "Running a command." not in told
