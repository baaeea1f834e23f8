"""The README's two set-up commands do what the README says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    ".hypothesis",
    ".pytest_cache",
    "node_modules",
    "build",
)


def readme_commands() -> list[str]:
    """The shell lines of the README's first code block (its first screen)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_first_screen_gives_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "pytest" in commands[1]
    assert "readme_test_command" in (ROOT / ".ci" / "run").read_text()


def test_the_main_command_runs_a_daemon_and_a_demo_conversation_in_a_fresh_venv(
    short_tmp: Path,
) -> None:
    tree = short_tmp / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
    env.update(
        AGENTPLEX_RUNTIME_DIR=str(short_tmp / "run"),
        AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
        AGENTPLEX_DEMO_DELAY="0.01",
    )
    done = subprocess.run(
        ["bash", "-c", readme_commands()[0]],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Turn 3" in done.stdout
    assert "session ended" in done.stdout
    transcripts = list((short_tmp / "state" / "sessions" / "demo").glob("*.jsonl"))
    assert len(transcripts) == 1
    assert not (short_tmp / "run" / "control.sock").exists()


def test_every_folder_the_layout_names_and_every_relative_link_exists() -> None:
    text = (ROOT / "README.md").read_text()
    layout = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(\.?[\w-]+/(?:[\w.-]+)?)`", layout)
    assert {"protocol/", "supervisor/", "client/", "cli/", "tests/"} <= set(named)
    linked = [t for t in re.findall(r"\]\(([^)#]+)\)", text) if "://" not in t]
    missing = [path for path in named + linked if not (ROOT / path).exists()]
    assert not missing, f"the README names paths that do not exist: {missing}"
