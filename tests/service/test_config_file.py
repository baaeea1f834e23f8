"""The config file: strict decoding, errors naming file and key, precedence, provenance."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest

from agentplex.plugins.claude import ClaudeBackend
from agentplex.protocol.errors import EXIT_CONFIG, ConfigError
from agentplex.supervisor.config import Config
from agentplex.supervisor.config_file import export_to_environment, load
from agentplex.supervisor.config_schema import EXPLICIT_KEYS, KEYS, NOT_KEYS, daemon_section


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[limits]\nmax_sessions = "ten"\n', 'limits.max_sessions: expected int, got str "ten"'),
        ("[limits]\nmax_sesions = 3\n", "limits.max_sesions: unknown key (expected one of: "),
        ("[limits]\nmax_sessions = 0\n", "limits.max_sessions: expected int >= 1, got int 0"),
        ("[grace]\nterminate = -1.0\n", "grace.terminate: expected float >= 0.0, got float -1.0"),
        ('[log]\nlevel = "loud"\n', 'log.level: expected one of "debug", "info", "warning"'),
        ("[metrics]\nport = 70000\n", "metrics.port: expected int <= 65535, got int 70000"),
        ("colour = 1\n", "colour: unknown key (expected one of: dirs, limits, grace"),
        ("limits = 3\n", "limits: expected object, got int 3"),
        ("[backends.claude]\nflags = [1]\n", "backends.claude.flags[0]: expected str, got int 1"),
        ("[backends.claude]\npath = 'x'\n", "backends.claude.path: unknown key (expected one of"),
        ("[limits\n", "not valid TOML: "),
    ],
)
def test_an_error_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.message.startswith(f"{path}: {message}")
    assert caught.value.exit_code == EXIT_CONFIG


def test_a_named_file_must_exist_but_the_default_may_be_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "missing.toml", environ={})
    resolved = load(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert resolved.file is None


def test_flags_beat_variables_beat_the_file_beats_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[limits]\nmax_sessions = 5\nqueue_limit = 7\nturn_timeout = 60\n"
        '[log]\nlevel = "debug"\n[dirs]\nstate = "~/apx-state"\n',
    )
    env = {"AGENTPLEX_MAX_SESSIONS": "9", "AGENTPLEX_QUEUE_LIMIT": "8"}
    resolved = load(path, environ=env, flags={"max_sessions": 11})
    config = resolved.config
    assert (config.max_sessions, config.queue_limit, config.turn_timeout) == (11, 8, 60.0)
    assert config.log_level == "debug" and config.log_format == "auto"
    assert config.state_dir == str(Path.home() / "apx-state")
    sources = {s.key: (s.source, s.origin) for s in resolved.settings}
    assert sources["limits.max_sessions"] == ("flag", "--max-sessions")
    assert sources["limits.queue_limit"] == ("env", "AGENTPLEX_QUEUE_LIMIT")
    assert sources["limits.turn_timeout"] == ("file", str(path))
    assert sources["log.format"] == ("default", "")


def test_variables_are_checked_like_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ={"XDG_CONFIG_HOME": str(tmp_path), "AGENTPLEX_METRICS_PORT": "http"})
    assert caught.value.message == (
        "AGENTPLEX_METRICS_PORT='http': metrics.port: expected int, got str \"http\""
    )


def test_backends_take_a_cli_and_flags_and_variables_override_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[backends.claude]\ncli = "bin/claude"\nflags = ["--verbose"]\n'
        '[backends.codex]\ncli = "/opt/codex"\n',
    )
    env = {"AGENTPLEX_CODEX_CLI": "/usr/bin/codex", "AGENTPLEX_GEMINI_FLAGS": "--yolo -m 'a b'"}
    resolved = load(path, environ=env)
    assert resolved.config.backend_flags == {
        "claude": ("--verbose",),
        "gemini": ("--yolo", "-m", "a b"),
    }
    by_key = {s.key: s for s in resolved.settings}
    assert by_key["backends.claude.cli"].value == str(tmp_path / "bin" / "claude")
    assert by_key["backends.codex.cli"].source == "env"
    exported: dict[str, str] = dict(env)
    export_to_environment(resolved, exported)
    assert exported["AGENTPLEX_CLAUDE_CLI"] == str(tmp_path / "bin" / "claude")
    assert exported["AGENTPLEX_CODEX_CLI"] == "/usr/bin/codex"  # the variable wins


def test_every_config_field_has_a_file_key() -> None:
    fields = {f.name for f in msgspec.structs.fields(Config)} - NOT_KEYS
    assert fields == {key.field for key in KEYS}
    assert {key.field for key in EXPLICIT_KEYS} <= fields, "a key names a field Config lost"


def test_a_config_field_without_a_key_of_its_own_is_accepted_under_daemon() -> None:
    section = daemon_section({"future_knob": float})
    assert (
        msgspec.convert({"future_knob": 2, "heartbeat_interval": 1.0}, section).future_knob == 2.0
    )
    expected = re.escape("Expected `float | null`, got `str`")
    with pytest.raises(msgspec.ValidationError, match=expected):
        msgspec.convert({"future_knob": "x"}, section)


def test_daemon_refuses_a_bad_file_in_one_line_naming_file_and_key(short_tmp: Path) -> None:
    path = write(short_tmp, '[retention]\ndelete_after_days = "soon"\n')
    done = run_cli(short_tmp, "daemon", "--config", str(path))
    assert done.returncode == EXIT_CONFIG
    assert done.stderr == (
        f'agentplex daemon: {path}: retention.delete_after_days: expected float, got str "soon"\n'
    )


def test_config_show_prints_each_value_and_where_it_came_from(short_tmp: Path) -> None:
    path = write(short_tmp, "[limits]\nmax_sessions = 12\n[metrics]\nport = 9300\n")
    done = run_cli(short_tmp, "--config", str(path), "config", "show", AGENTPLEX_LOG_LEVEL="debug")
    assert done.returncode == 0, done.stderr
    lines = {line.split("=")[0].strip(): line for line in done.stdout.splitlines()}
    assert lines["max_sessions"].startswith("max_sessions = 12 ")
    assert lines["max_sessions"].endswith("# file, override: AGENTPLEX_MAX_SESSIONS")
    assert lines["level"].endswith("# env AGENTPLEX_LOG_LEVEL") and '"debug"' in lines["level"]
    assert lines["queue_limit"].endswith("# default, override: AGENTPLEX_QUEUE_LIMIT")
    shown = json.loads(run_cli(short_tmp, "--config", str(path), "config", "show", "--json").stdout)
    assert shown["metrics.port"] == {
        "value": 9300,
        "source": "file",
        "origin": str(path),
        "env": "AGENTPLEX_METRICS_PORT",
    }


def test_clients_find_the_daemon_through_the_files_runtime_dir(short_tmp: Path) -> None:
    path = write(short_tmp, f'[dirs]\nruntime = "{short_tmp / "elsewhere"}"\n')
    done = run_cli(short_tmp, "--config", str(path), "ls", AGENTPLEX_RUNTIME_DIR="")
    assert done.returncode == 69
    assert str(short_tmp / "elsewhere") in done.stderr


def run_cli(base: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(
        os.environ,
        XDG_CONFIG_HOME=str(base / "xdg"),
        AGENTPLEX_RUNTIME_DIR=str(base / "run"),
        AGENTPLEX_STATE_DIR=str(base / "state"),
    )
    environ.update(env)
    environ = {k: v for k, v in environ.items() if v}
    return subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_readme_example_is_a_valid_config_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert example is not None
    resolved = load(write(tmp_path, example.group(1)), environ={})
    assert resolved.config.metrics_port == 9464
    assert resolved.config.backend_flags == {"claude": ("--verbose",)}


# ---------------------------------------------------------------------- issue 13 item 9


ROUND_TRIP_FILE = """\
[limits]
max_sessions = 12
[daemon]
env_allowlist = ["MY_VAR"]
env_file = "agentplex.env"
fd_reserve = 100
[backends.claude]
cli = "claude"
flags = ["--verbose"]
env = {ANTHROPIC_BASE_URL = "http://127.0.0.1:9"}
"""


def test_config_show_prints_valid_toml_that_loads_as_the_same_config(short_tmp: Path) -> None:
    (short_tmp / "agentplex.env").write_text("A=1\n")
    path = write(short_tmp, ROUND_TRIP_FILE)
    done = run_cli(short_tmp, "--config", str(path), "config", "show")
    assert done.returncode == 0, done.stderr
    shown = tomllib.loads(done.stdout)  # [daemon] once: its keys come from two places
    assert shown["daemon"]["fd_reserve"] == 100 and shown["daemon"]["env_allowlist"] == ["MY_VAR"]
    again = short_tmp / "shown.toml"
    again.write_text(done.stdout)
    dirs = {
        "AGENTPLEX_RUNTIME_DIR": str(short_tmp / "run"),
        "AGENTPLEX_STATE_DIR": str(short_tmp / "state"),
    }
    assert load(again, environ={}).config == load(path, environ=dirs).config


def test_a_backend_table_for_an_unknown_backend_is_refused_naming_the_known_ones(
    short_tmp: Path,
) -> None:
    path = write(short_tmp, '[backends.claud]\ncli = "/opt/claude"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert "unknown backend 'claud'" in caught.value.message
    assert "claude" in caught.value.message.split("known:")[1]
    done = run_cli(short_tmp, "--config", str(path), "config", "show")
    assert done.returncode == EXIT_CONFIG
    assert "AGENTPLEX_CLAUD_CLI" not in done.stdout + done.stderr


def test_a_bare_cli_name_is_looked_up_on_path_not_next_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text("#!/bin/sh\n")
    (bin_dir / "claude").chmod(0o755)
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", '[backends.claude]\ncli = "claude"\n')
    resolved = load(path, environ={})
    assert {s.key: s.value for s in resolved.settings}["backends.claude.cli"] == "claude"
    environ: dict[str, str] = {}
    export_to_environment(resolved, environ)
    monkeypatch.setenv("AGENTPLEX_CLAUDE_CLI", environ["AGENTPLEX_CLAUDE_CLI"])
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(tmp_path)
    assert ClaudeBackend().locate().executable == str(bin_dir / "claude")


def test_backend_env_tables_and_an_env_file_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, ROUND_TRIP_FILE)
    with pytest.raises(ConfigError, match=r"env file .*agentplex\.env: cannot read"):
        load(path, environ={})  # a missing env file stops the daemon at start
    (tmp_path / "agentplex.env").write_text("A=1\n")
    config = load(path, environ={}).config
    assert config.backend_env == {"claude": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}}
    assert config.env_file == str(tmp_path / "agentplex.env")
    assert config.env_allowlist == ("MY_VAR",)  # added to the default list, not instead
