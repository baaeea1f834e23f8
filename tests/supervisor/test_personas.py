"""Personas come from TOML templates: built-in, overridden by the user's, broken ones skipped."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.plugins.api import PermissionPolicy
from agentplex.protocol import errors as e
from agentplex.supervisor.api import REQUIRED_ROLE
from agentplex.supervisor.personas import BUILTIN_DIR, PersonaRegistry, TemplateLoader

WRITER = 'name = "Writer"\nicon = "✍"\nbackend = "demo"\ninstructions = "Write well."\n'
BACKENDS = ("demo", "exec", "claude")


def test_the_built_in_personas_are_pm_qa_and_specialist_with_icons() -> None:
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR]))
    icons = {persona.name: persona.icon for persona in registry}
    assert icons == {"PM": "📋", "QA": "🧪", "Specialist": "⚡"}
    assert registry.problems == []
    assert registry.get("qa").instructions.strip()


def test_a_user_template_overrides_a_built_in_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "qa.toml").write_text(
        'name = "QA"\nicon = "🔬"\ninstructions = "Only review."\npermission_policy = "deny"\n'
    )
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]))
    qa = registry.get("QA")
    assert (qa.icon, qa.instructions, qa.permission_policy) == (
        "🔬",
        "Only review.",
        PermissionPolicy.DENY,
    )
    assert registry.get("pm").icon == "📋"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('name = "X"\nicon = \n', "Invalid value"),
        ('icon = "x"\n', "name"),
        ('name = "X"\ncolour = "red"\n', "colour"),
        ('name = "X"\npermission_policy = "maybe"\n', "permission_policy"),
    ],
)
def test_a_broken_template_is_reported_with_its_path_and_skipped(
    tmp_path: Path, content: str, problem: str
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(content)
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]))
    assert len(registry.problems) == 1
    assert registry.problems[0].path == broken
    assert problem in registry.problems[0].problem
    assert {persona.name for persona in registry} == {"PM", "QA", "Specialist"}


def test_the_daemon_starts_despite_a_broken_template_and_lists_personas(short_tmp: Path) -> None:
    config_home = short_tmp / "config"
    (config_home / "agentplex" / "personas").mkdir(parents=True)
    (config_home / "agentplex" / "personas" / "bad.toml").write_text("not = [valid\n")
    (config_home / "agentplex" / "personas" / "writer.toml").write_text(
        'name = "Writer"\nicon = "✍"\nbackend = "demo"\ninstructions = "Write well."\n'
    )
    daemon = start_daemon(short_tmp, env={"XDG_CONFIG_HOME": str(config_home)})
    try:
        listing = daemon.cli("personas")
        assert listing.returncode == e.EXIT_CONFIG  # listed, but a template is broken
        assert "Writer" in listing.stdout and "📋 PM" in listing.stdout
        assert "bad.toml" in listing.stderr
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start(persona="writer", prompt="hello")
            assert (info.backend, info.persona, info.persona_icon) == ("demo", "Writer", "✍")
            next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
            with pytest.raises(e.UnknownPersona):
                client.start(persona="nobody", prompt="hello")
    finally:
        assert daemon.stop() == 0


# ------------------------------------------------------------------ problems a listing shows


def test_two_files_naming_one_persona_are_a_problem_naming_both_and_the_last_wins(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-review.toml").write_text('name = "Reviewer"\nicon = "1"\n')
    (tmp_path / "b-review.toml").write_text('name = "reviewer"\nicon = "2"\n')
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]))
    assert registry.get("REVIEWER").icon == "2"
    [problem] = registry.problems
    assert problem.path == tmp_path / "b-review.toml"
    assert str(problem) == (
        f"{tmp_path / 'b-review.toml'}: persona 'reviewer' is also defined in "
        f"{tmp_path / 'a-review.toml'}; this file is used (the last in name order wins)"
    )


def test_a_user_template_overriding_a_built_in_is_not_a_problem(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('name = "qa"\nicon = "🔬"\n')
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]))
    assert registry.problems == [] and registry.get("QA").icon == "🔬"


def test_a_persona_naming_an_unknown_backend_is_listed_with_a_problem(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text('name = "Typo"\nbackend = "claud"\n')
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]), BACKENDS)
    [typo] = [info for info in registry.describe() if info.name == "Typo"]
    expected = (
        "persona 'Typo' names backend 'claud', which is not registered "
        "(known: claude, demo, exec); starting it fails"
    )
    assert typo.problem == expected
    assert [str(problem) for problem in registry.problems] == [
        f"{tmp_path / 'typo.toml'}: {expected}"
    ]
    assert all(info.problem is None for info in registry.describe() if info.name != "Typo")


def test_reload_reads_the_templates_again_and_says_what_changed(tmp_path: Path) -> None:
    (tmp_path / "gone.toml").write_text('name = "Gone"\n')
    (tmp_path / "qa.toml").write_text('name = "QA"\nicon = "🔬"\n')
    registry = PersonaRegistry(TemplateLoader([BUILTIN_DIR, tmp_path]), BACKENDS)
    assert registry.reload() == []
    (tmp_path / "gone.toml").unlink()
    (tmp_path / "qa.toml").write_text('name = "QA"\nicon = "🧫"\n')
    (tmp_path / "writer.toml").write_text(WRITER)
    assert registry.reload() == [
        f"changed QA ({tmp_path / 'qa.toml'})",
        f"added Writer ({tmp_path / 'writer.toml'})",
        "removed Gone",
    ]
    assert registry.get("qa").icon == "🧫" and registry.get("writer").backend == "demo"
    with pytest.raises(e.UnknownPersona):
        registry.get("gone")


# ------------------------------------------------------------------ a running daemon


@pytest.fixture
def persona_dir(short_tmp: Path) -> Path:
    directory = short_tmp / "config" / "agentplex" / "personas"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def persona_daemon(short_tmp: Path, persona_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(short_tmp, env={"XDG_CONFIG_HOME": str(short_tmp / "config")})
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.log_lines[-5:]


def wait_for_log(daemon: DaemonProcess, event: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in list(daemon.log_lines) if line.get("event") == event]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {event!r} log line within {timeout} s"
        assert daemon.process.poll() is None, f"daemon exited before {event!r}"
        time.sleep(0.01)


def persona_names(daemon: DaemonProcess) -> set[str]:
    with daemon.client() as client:
        return {persona.name for persona in client.personas().personas}


def test_sighup_makes_the_daemon_read_a_new_template_and_sessions_run_on(
    persona_daemon: DaemonProcess, persona_dir: Path
) -> None:
    daemon = persona_daemon
    assert "Writer" not in persona_names(daemon)
    with daemon.client() as client:
        running = client.start("exec", argv=["sleep", "300"])
    (persona_dir / "writer.toml").write_text(WRITER)
    daemon.process.send_signal(signal.SIGHUP)
    reloaded = wait_for_log(daemon, "personas_reloaded")
    assert reloaded["changes"] == [f"added Writer ({persona_dir / 'writer.toml'})"]
    assert "Writer" in persona_names(daemon)
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        assert client.inspect(running.id).status is p.SessionStatus.RUNNING  # not stopped
        info = client.start(persona="writer", prompt="hello")
        assert (info.backend, info.persona) == ("demo", "Writer")
        next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))


def test_personas_reload_reads_them_again_and_prints_what_changed(
    persona_daemon: DaemonProcess, persona_dir: Path
) -> None:
    daemon = persona_daemon
    (persona_dir / "writer.toml").write_text(WRITER)
    done = daemon.cli("personas", "--reload")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"reloaded: added Writer ({persona_dir / 'writer.toml'})"
    assert any("Writer" in line and "demo" in line for line in lines[1:])
    again = daemon.cli("personas", "--reload", "--json")
    assert again.returncode == 0, again.stderr
    listing = json.loads(again.stdout)
    assert listing["changes"] == [] and listing["problems"] == []
    assert "Writer" in {persona["name"] for persona in listing["personas"]}


def test_personas_json_carries_every_problem_and_the_exit_code_says_config(
    persona_daemon: DaemonProcess, persona_dir: Path
) -> None:
    daemon = persona_daemon
    (persona_dir / "bad.toml").write_text("not = [valid\n")
    (persona_dir / "typo.toml").write_text('name = "Typo"\nbackend = "claud"\n')
    (persona_dir / "x1.toml").write_text('name = "Twin"\n')
    (persona_dir / "x2.toml").write_text('name = "TWIN"\n')
    done = daemon.cli("personas", "--reload", "--json")
    assert done.returncode == e.EXIT_CONFIG == 78
    listing = json.loads(done.stdout)
    problems = listing["problems"]
    assert len(problems) == 3, problems
    assert any(problem.startswith(f"{persona_dir / 'bad.toml'}: ") for problem in problems)
    assert any(
        f"{persona_dir / 'x1.toml'}; this file is used" in problem
        and problem.startswith(f"{persona_dir / 'x2.toml'}: ")
        for problem in problems
    )
    [typo] = [persona for persona in listing["personas"] if persona["name"] == "Typo"]
    assert "names backend 'claud', which is not registered" in typo["problem"]
    text = daemon.cli("personas")
    assert text.returncode == 78
    assert any(
        line.startswith("  Typo") and line.endswith("(!) see below")
        for line in text.stdout.splitlines()
    )
    assert "agentplex personas: " in text.stderr and "typo.toml" in text.stderr
    with daemon.client() as client, pytest.raises(e.UnknownBackend):
        client.start(persona="typo", prompt="hello")


def test_reloading_personas_needs_the_admin_role() -> None:
    assert REQUIRED_ROLE[p.ReloadPersonas] is p.Role.ADMIN
