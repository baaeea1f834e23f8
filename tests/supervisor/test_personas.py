"""Personas come from TOML templates: built-in, overridden by the user's, broken ones skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.plugins.api import PermissionPolicy
from agentplex.protocol import errors as e
from agentplex.supervisor.personas import BUILTIN_DIR, PersonaRegistry, TemplateLoader


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
        assert listing.returncode == 0
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
