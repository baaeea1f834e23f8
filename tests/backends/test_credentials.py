"""Credentials reach the real agent CLIs from the daemon, and secret ``--env`` values stay
off the disk.

Each CLI runs for real against its fake API, under a daemon that has the credentials in its
own environment, or in an env file its config file points at (as systemd's
``EnvironmentFile=`` would give them), and never in the start request.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.anthropic_api import FakeAnthropic
from fakes.clis import codex_config, gemini_settings
from fakes.gemini_api import FakeGemini
from fakes.openai_responses import FakeOpenAIResponses
from fakes.server import FakeServer, RecordedRequest
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client

TURN_TIMEOUT = 90.0
"""Generous: a cold CLI on a loaded 2-core machine."""


@dataclass(frozen=True)
class Vendor:
    """How one CLI is pointed at its fake: the variables, and where the key shows."""

    fake: Callable[[], FakeServer]
    variables: Callable[[str, Path], dict[str, str]]
    """(fake url, HOME) -> the credentials, writing any config the CLI needs below HOME."""
    key_header: Callable[[RecordedRequest], str | None]


def _claude(url: str, home: Path) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}


def _codex(url: str, home: Path) -> dict[str, str]:
    # Codex takes its endpoint from a config file only (a model provider), and its key from
    # the variable that provider names: here the usual OPENAI_API_KEY.
    codex_home = home / "codex-home"
    codex_home.mkdir(parents=True, exist_ok=True)
    config = codex_config(url).replace('"FAKE_OPENAI_API_KEY"', '"OPENAI_API_KEY"')
    (codex_home / "config.toml").write_text(config)
    return {"OPENAI_API_KEY": KEY, "CODEX_HOME": str(codex_home)}


def _gemini(url: str, home: Path) -> dict[str, str]:
    # Headless Gemini with a base URL needs API-key auth selected in ~/.gemini: HOME is
    # passed to sessions, so the user's own settings apply.
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(gemini_settings()))
    return {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": url}


KEY = "sk-test-daemon-" + uuid.uuid4().hex
VENDORS = {
    "claude": Vendor(FakeAnthropic, _claude, lambda r: r.headers.get("x-api-key")),
    "codex": Vendor(
        FakeOpenAIResponses, _codex, lambda r: r.headers.get("authorization", "")[7:] or None
    ),
    "gemini": Vendor(FakeGemini, _gemini, lambda r: r.headers.get("x-goog-api-key")),
}
ALL_CREDENTIALS = (
    *("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"),
    *("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "OPENAI_BASE_URL"),
    *("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
)


@pytest.fixture(autouse=True)
def _no_credentials_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons here inherit the test's environment: it must hold no credentials."""
    for name in ALL_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home(short_tmp: Path) -> Path:
    path = short_tmp / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(short_tmp: Path) -> Path:
    path = short_tmp / "project"
    path.mkdir()
    return path


def cli_variables(agent_clis: dict[str, Path]) -> dict[str, str]:
    return {f"AGENTPLEX_{name.upper()}_CLI": str(path) for name, path in agent_clis.items()}


def run_one_turn(daemon: DaemonProcess, backend: str, project: Path, prompt: str) -> p.Chunk:
    """Start a session with no ``--env``; its first result chunk."""
    with daemon.client(timeout=30) as client, client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start(backend, prompt, cwd=project)
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), TURN_TIMEOUT)
    assert isinstance(result, p.Chunk)
    return result


def env_file_text(variables: dict[str, str]) -> str:
    """An ``EnvironmentFile=`` in the styles systemd reads: comments, quotes, bare values."""
    lines = ["# credentials for agentplex", "; another comment", ""]
    for i, (name, value) in enumerate(variables.items()):
        lines.append(f'{name}="{value}"' if i % 2 else f"{name}={value}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("backend", sorted(VENDORS))
@pytest.mark.parametrize("where", ["environment", "env_file"])
def test_a_turn_completes_with_credentials_only_in_the_daemon(
    backend: str,
    where: str,
    agent_clis: dict[str, Path],
    short_tmp: Path,
    home: Path,
    project: Path,
) -> None:
    vendor = VENDORS[backend]
    with vendor.fake() as fake:
        variables = vendor.variables(fake.url, home)
        env = {**cli_variables(agent_clis), "HOME": str(home)}
        if where == "environment":
            env.update(variables)
        else:
            (short_tmp / "agentplex.env").write_text(env_file_text(variables))
            config = short_tmp / "config.toml"
            config.write_text('[daemon]\nenv_file = "agentplex.env"\n')
            env["AGENTPLEX_CONFIG"] = str(config)
        daemon = start_daemon(short_tmp, "--grace", "2", env=env)
        try:
            result = run_one_turn(daemon, backend, project, "say hello")
            with daemon.client() as client:
                info = {b.id: b for b in client.backends()}[backend]
        finally:
            assert daemon.stop() == 0
        requests = fake.model_requests()
    assert not result.is_error, result.text
    assert "Hello from fake" in result.text
    assert requests and vendor.key_header(requests[-1]) == KEY
    assert set(variables) <= set(info.credentials_found)
    assert KEY not in p.encode(info).decode()


# --------------------------------------------------------------------------- secrets


def _state_files(state_dir: Path) -> Iterator[Path]:
    return (path for path in state_dir.rglob("*") if path.is_file())


def _grep(directory: Path, secret: str) -> list[Path]:
    """``grep -r``: the files under ``directory`` that hold ``secret``."""
    return [path for path in _state_files(directory) if secret.encode() in path.read_bytes()]


def test_a_secret_env_value_is_nowhere_on_disk_and_the_session_continues_after_a_crash(
    agent_clis: dict[str, Path], short_tmp: Path, home: Path, project: Path
) -> None:
    secret = "sk-test-" + uuid.uuid4().hex
    env = {**cli_variables(agent_clis), "HOME": str(home)}
    with FakeOpenAIResponses() as fake:
        session_env = {**_codex(fake.url, home), "OPENAI_API_KEY": secret}
        daemon = start_daemon(short_tmp, "--grace", "2", env=env)
        logs = daemon.log_lines
        try:
            with daemon.client(timeout=30) as client, client.subscribe(p.CHUNK_TOPIC) as events:
                info = client.start("codex", "first", cwd=project, env=session_env)
                next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), TURN_TIMEOUT)
                wait_idle(client, info.id)
            kept = daemon.runtime_dir / "secrets" / f"{info.id}.json"
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        finally:
            crash(daemon)  # the restart that turn-based sessions are promised to survive
        daemon = start_daemon(short_tmp, "--grace", "2", env=env)
        try:
            with daemon.client(timeout=30) as client, client.subscribe(p.CHUNK_TOPIC) as events:
                client.send("second", info.id)
                second = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT), TURN_TIMEOUT)
                wait_idle(client, info.id)
                client.terminate(info.id)
        finally:
            assert daemon.stop() == 0
        requests = fake.model_requests()
    assert isinstance(second, p.Chunk) and not second.is_error, second
    assert len(requests) >= 2
    assert all(r.headers.get("authorization") == f"Bearer {secret}" for r in requests)
    assert _grep(daemon.state_dir, secret) == []
    assert not any(secret in json.dumps(line) for line in [*logs, *daemon.log_lines])
    assert not kept.exists()  # the session ended: no process will need it


def crash(daemon: DaemonProcess) -> None:
    """``kill -9`` the daemon and wait until it is gone."""
    daemon.process.kill()
    daemon.process.wait(timeout=30)
    daemon.log_done.wait(30)


def wait_idle(client: Client, session_id: str, timeout: float = 30.0) -> None:
    """Until the session is idle (its turn over and saved), with a deadline."""
    with client.subscribe(p.SESSION_TOPIC) as events:
        if client.inspect(session_id).status is p.SessionStatus.IDLE:
            return
        next_event(
            events,
            lambda e: (
                isinstance(e, p.StatusChanged)
                and e.session_id == session_id
                and e.status is p.SessionStatus.IDLE
            ),
            timeout,
        )


def test_no_credential_is_ever_shown_by_backends(short_tmp: Path, home: Path) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "HOME": str(home)}
    (home / ".codex").mkdir()
    (home / ".codex" / "auth.json").write_text("{}")
    daemon = start_daemon(short_tmp, env=env)
    try:
        listing = daemon.cli("backends")
        as_json = daemon.cli("backends", "--json")
    finally:
        assert daemon.stop() == 0
    assert listing.returncode == 0 and as_json.returncode == 0, listing.stderr
    assert KEY not in listing.stdout + as_json.stdout
    infos = {b["id"]: b for b in json.loads(as_json.stdout)}
    assert infos["claude"]["credentials_found"] == ["ANTHROPIC_API_KEY"]
    assert infos["codex"]["credentials_found"] == ["~/.codex/auth.json"]
    assert infos["gemini"]["credentials_found"] == []
    assert "ANTHROPIC_API_KEY" in listing.stdout and "none found" in listing.stdout
