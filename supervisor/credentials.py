"""Credentials: where a session's variables come from, and secrets kept off the disk.

An agent CLI authenticates with variables of its own (``ANTHROPIC_API_KEY``, ``CODEX_HOME``...)
that each backend declares (``credentials``, see :mod:`agentplex.plugins.api`). The daemon's
own environment for that purpose is its process environment over what systemd's
``LoadCredential=`` left in ``$CREDENTIALS_DIRECTORY`` over the config file's ``env_file``
(systemd ``EnvironmentFile=`` syntax). A session gets, in this order (later wins): the
default allowlist and ``[daemon] env_allowlist``, the backend's declared credentials, what
the backend itself sets, ``[backends.<id>] env``, the session's ``--env``, its marker.

``--env`` values whose names look secret never reach the session table, transcripts or
logs: they stay in memory and in a per-session 0600 file under ``<runtime dir>/secrets/``
(the private runtime dir, a tmpfs as a rule: nothing on disk) that a restarted daemon reads
back and that goes when the session has ended. After a reboot it is gone; the session then
takes the same names from the daemon's environment, if it has them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec
import structlog

from agentplex.plugins.api import Backend, SessionSpec
from agentplex.protocol.errors import ConfigError
from agentplex.supervisor.config import DEFAULT_ENV_ALLOWLIST, Config

log = structlog.get_logger(__name__)

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
"""A variable whose name holds one of these (any case) is treated as a secret."""
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
"""Set by systemd for a unit with ``LoadCredential=``: one file per credential."""
SECRETS_DIR = "secrets"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$", "`": "`"}


def looks_secret(name: str) -> bool:
    """Whether a variable's name says it holds a secret (``OPENAI_API_KEY``, ``DB_PASSWORD``)."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def split_secrets(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``env`` as (plain, secret) variables."""
    plain = {k: v for k, v in env.items() if not looks_secret(k)}
    return plain, {k: v for k, v in env.items() if looks_secret(k)}


# ---------------------------------------------------------------------- the daemon's side


def declared(backend: Backend) -> tuple[str, ...]:
    """The variables a backend's CLI authenticates with (none for a backend that says none)."""
    return tuple(getattr(backend, "credentials", ()))


def declared_files(backend: Backend) -> tuple[str, ...]:
    """Files (``~`` for the daemon's HOME) where the CLI keeps a login of its own."""
    return tuple(getattr(backend, "credential_files", ()))


def daemon_environment(config: Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables sessions may take from the daemon: its ``env_file``, then
    ``$CREDENTIALS_DIRECTORY``'s files, then its process environment (each over the last)."""
    environ = os.environ if environ is None else environ
    merged = read_env_file(Path(config.env_file)) if config.env_file else {}
    merged.update(read_credentials_directory(environ))
    merged.update((k, v) for k, v in environ.items() if v or k not in merged)  # "" is unset
    return merged


def session_environment(
    config: Config,
    backend: Backend,
    spec: SessionSpec,
    daemon_env: Mapping[str, str],
    marker: tuple[str, str],
) -> dict[str, str]:
    """A session's whole environment (see the module docstring for the order)."""
    names = (*DEFAULT_ENV_ALLOWLIST, *config.env_allowlist, *declared(backend))
    env = {name: daemon_env[name] for name in names if name in daemon_env}
    env.update(backend.environment(spec))
    env.update(config.backend_env.get(backend.id, {}))
    env.update(spec.env)
    env[marker[0]] = marker[1]
    return env


def found(backend: Backend, config: Config, daemon_env: Mapping[str, str]) -> list[str]:
    """The declared credentials this daemon would give the backend's sessions: variable
    names, and login files that exist (as declared, ``~/...``). Never a value."""
    configured = config.backend_env.get(backend.id, {})
    names = [n for n in declared(backend) if daemon_env.get(n) or configured.get(n)]
    home = Path(daemon_env.get("HOME") or Path.home())
    files = [f for f in declared_files(backend) if _expand(f, home).is_file()]
    return names + files


def _expand(path: str, home: Path) -> Path:
    return home / path[2:] if path.startswith("~/") else Path(path)


# ---------------------------------------------------------------------- files


def read_env_file(path: Path) -> dict[str, str]:
    """A systemd ``EnvironmentFile=``: ``KEY=VALUE`` lines, ``#``/``;`` comments, blank
    lines, values in single or double quotes, ``export`` tolerated. A ConfigError names
    the file and line of anything else."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"env file {path}: cannot read: {reason}") from exc
    values: dict[str, str] = {}
    for number, line in enumerate(_logical_lines(text), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        name, sep, raw = stripped.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise ConfigError(f"env file {path}, line {number}: expected NAME=VALUE")
        try:
            values[name] = _unquote(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"env file {path}, line {number}: {exc}") from None
    return values


def _logical_lines(text: str) -> list[str]:
    """Lines, a trailing backslash joining a line to the next (as systemd does)."""
    return re.sub(r"\\\n", "", text).splitlines()


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise ValueError("unterminated double quote")
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), raw[1:-1])
    if raw.startswith("'"):
        raise ValueError("unterminated single quote")
    return raw


def read_credentials_directory(environ: Mapping[str, str]) -> dict[str, str]:
    """``$CREDENTIALS_DIRECTORY/<NAME>`` files as variables (one trailing newline dropped);
    files whose names are no variable names are left out."""
    directory = environ.get(CREDENTIALS_DIRECTORY)
    if not directory:
        return {}
    values: dict[str, str] = {}
    try:
        entries = sorted(Path(directory).iterdir())
    except OSError as exc:
        log.error("credentials_directory_unreadable", path=directory, error=exc.strerror)
        return {}
    for entry in entries:
        if not _NAME.match(entry.name) or not entry.is_file():
            continue
        try:
            values[entry.name] = entry.read_text().removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            log.error("credential_unreadable", name=entry.name, error=repr(exc))
    return values


# ---------------------------------------------------------------------- secret --env values


class SecretStore:
    """A session's secret ``--env`` values, one 0600 file each under ``<runtime>/secrets``."""

    def __init__(self, runtime_dir: Path) -> None:
        self.dir = runtime_dir / SECRETS_DIR

    def path(self, session_id: str) -> Path:
        return self.dir / f"{session_id}.json"

    def save(self, session_id: str, secrets: Mapping[str, str]) -> None:
        """Keep ``secrets`` for a restart (nothing is written when there are none)."""
        if not secrets:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.path(session_id)
        temporary = target.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, msgspec.json.encode(dict(secrets)))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)

    def load(self, session_id: str) -> dict[str, str]:
        """The saved secrets; none if there are none (or they are unreadable: logged)."""
        try:
            data = self.path(session_id).read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("secrets_unreadable", session_id=session_id, error=exc.strerror)
            return {}
        try:
            return msgspec.json.decode(data, type=dict[str, str])
        except msgspec.DecodeError as exc:
            log.error("secrets_damaged", session_id=session_id, error=str(exc))
            return {}

    def delete(self, session_id: str) -> None:
        """Forget a session's secrets (it has ended: no process will need them)."""
        try:
            self.path(session_id).unlink(missing_ok=True)
        except OSError as exc:
            log.error("secrets_not_deleted", session_id=session_id, error=exc.strerror)
