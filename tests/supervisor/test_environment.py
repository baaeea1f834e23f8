"""Each session gets an explicit environment, never the whole daemon environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.protocol import errors as e
from agentplex.supervisor.credentials import looks_secret, read_env_file

PRINT_ENV = "import os, json\nprint(json.dumps(dict(os.environ)), flush=True)\ninput()"


def test_a_session_sees_the_allowlist_its_overrides_and_its_marker_only(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, env={"SECRET_TOKEN": "leak-me", "LANG": "C.UTF-8"})
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start(
                "exec", argv=[sys.executable, "-c", PRINT_ENV], env={"EXTRA": "given"}
            )
            line = next_event(events, is_chunk(info.id, text="{"))
        env = json.loads(line.text)  # type: ignore[union-attr]
        assert "SECRET_TOKEN" not in env
        assert env["LANG"] == "C.UTF-8"
        assert env["EXTRA"] == "given"
        assert env["AGENTPLEX_SESSION_ID"] == info.id
    finally:
        assert daemon.stop() == 0


def test_a_backend_whose_cli_is_missing_is_refused_at_start_saying_where_it_looked(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, env={"AGENTPLEX_CLAUDE_CLI": "/nowhere/claude"})
    try:
        with daemon.client() as client:
            with pytest.raises(e.BackendUnavailable) as raised:
                client.start("claude", "hello")
            assert "claude" in raised.value.message
            assert "/nowhere/claude" in raised.value.message
            backends = {b.id: b for b in client.backends()}
            assert not backends["claude"].available
            assert backends["demo"].available and backends["exec"].available
    finally:
        assert daemon.stop() == 0


def session_env(daemon: DaemonProcess, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment an exec session of ``daemon`` sees (``env``: its ``--env``)."""
    with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", PRINT_ENV], env=env or {})
        line = next_event(events, is_chunk(info.id, text="{"))
        client.terminate(info.id)
    return json.loads(line.text)  # type: ignore[union-attr,no-any-return]


def test_env_allowlist_extends_the_default_list_so_path_and_home_stay(short_tmp: Path) -> None:
    config = short_tmp / "config.toml"
    config.write_text('[daemon]\nenv_allowlist = ["MY_SETTING"]\n')
    daemon = start_daemon(
        short_tmp, env={"AGENTPLEX_CONFIG": str(config), "MY_SETTING": "on", "OTHER": "no"}
    )
    try:
        env = session_env(daemon)
    finally:
        assert daemon.stop() == 0
    assert env["MY_SETTING"] == "on"
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert "OTHER" not in env


def test_an_env_file_systemd_credentials_and_backend_env_reach_sessions(short_tmp: Path) -> None:
    """As under systemd: ``EnvironmentFile=`` read by the daemon itself, ``LoadCredential=``
    files in ``$CREDENTIALS_DIRECTORY``, and ``[backends.<id>] env``."""
    (short_tmp / "agentplex.env").write_text(
        "# keys\nFROM_FILE=\"a value\"\nOVERRIDDEN=file\nexport QUOTED='single'\n"
    )
    credentials = short_tmp / "credentials"
    credentials.mkdir()
    (credentials / "MY_TOKEN").write_text("tok-123\n")
    config = short_tmp / "config.toml"
    config.write_text(
        '[daemon]\nenv_file = "agentplex.env"\n'
        'env_allowlist = ["FROM_FILE", "OVERRIDDEN", "QUOTED", "MY_TOKEN"]\n'
        '[backends.exec]\nenv = {SET_BY_CONFIG = "yes"}\n'
    )
    environ = {
        "AGENTPLEX_CONFIG": str(config),
        "CREDENTIALS_DIRECTORY": str(credentials),
        "OVERRIDDEN": "process",
    }
    daemon = start_daemon(short_tmp, env=environ)
    try:
        env = session_env(daemon, {"SET_BY_CONFIG": "session wins"})
        plain = session_env(daemon)
    finally:
        assert daemon.stop() == 0
    assert env["FROM_FILE"] == "a value" and env["QUOTED"] == "single"
    assert env["OVERRIDDEN"] == "process"  # the daemon's real environment wins
    assert env["MY_TOKEN"] == "tok-123"
    assert env["SET_BY_CONFIG"] == "session wins" and plain["SET_BY_CONFIG"] == "yes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\n", {"A": "1"}),
        ("# c\n; c\n\nA = spaced \n", {"A": "spaced"}),
        ('A="x \\"y\\" \\\\ z"\n', {"A": 'x "y" \\ z'}),
        ("A='$HOME \\n'\n", {"A": "$HOME \\n"}),
        ("A=one \\\ntwo\n", {"A": "one two"}),
        ("export A=1\nA=2\n", {"A": "2"}),
        ("A=\n", {"A": ""}),
    ],
)
def test_an_env_file_is_read_as_systemd_reads_one(
    tmp_path: Path, text: str, expected: dict[str, str]
) -> None:
    path = tmp_path / "f.env"
    path.write_text(text)
    assert read_env_file(path) == expected


@pytest.mark.parametrize("text", ["just words\n", "1A=x\n", 'A="open\n', "A='open\n"])
def test_a_bad_env_file_line_is_refused_naming_file_and_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.env"
    path.write_text("OK=1\n" + text)
    with pytest.raises(e.ConfigError, match=rf"env file {path}, line 2: "):
        read_env_file(path)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OPENAI_API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("client_secret", True),
        ("DB_PASSWORD", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("ANTHROPIC_BASE_URL", False),
        ("LANG", False),
    ],
)
def test_secret_looking_names_are_told_apart(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret
