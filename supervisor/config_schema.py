"""What the config file may say: every key with its variable and flag, and the TOML tables.

Every ``Config`` field is a key: those listed in ``EXPLICIT_KEYS`` under their own table,
the rest as ``[daemon] <field>`` (``AGENTPLEX_<FIELD>``), so a new field is configurable at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import msgspec

from agentplex.supervisor.config import Config

Positive = Annotated[int, msgspec.Meta(ge=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Interval = Annotated[float, msgspec.Meta(gt=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


# ---------------------------------------------------------------------- the keys


@dataclass(frozen=True)
class Key:
    """One setting: its file key, the Config field it fills, its variable and flag."""

    name: str
    field: str
    env: str
    flag: str | None = None


EXPLICIT_KEYS = (
    Key("dirs.runtime", "runtime_dir", "AGENTPLEX_RUNTIME_DIR", "--runtime-dir"),
    Key("dirs.state", "state_dir", "AGENTPLEX_STATE_DIR", "--state-dir"),
    Key("limits.max_sessions", "max_sessions", "AGENTPLEX_MAX_SESSIONS", "--max-sessions"),
    Key("limits.keep_ended", "keep_ended", "AGENTPLEX_KEEP_ENDED"),
    Key("limits.queue_limit", "queue_limit", "AGENTPLEX_QUEUE_LIMIT"),
    Key("limits.max_line_bytes", "max_line_bytes", "AGENTPLEX_MAX_LINE_BYTES"),
    Key("limits.turn_timeout", "turn_timeout", "AGENTPLEX_TURN_TIMEOUT", "--turn-timeout"),
    Key("limits.replay_ring_chunks", "replay_ring_chunks", "AGENTPLEX_REPLAY_RING_CHUNKS"),
    Key("limits.replay_ring_bytes", "replay_ring_bytes", "AGENTPLEX_REPLAY_RING_BYTES"),
    Key("limits.max_run_time", "max_run_time", "AGENTPLEX_MAX_RUN_TIME"),
    Key("limits.idle_timeout", "idle_timeout", "AGENTPLEX_IDLE_TIMEOUT"),
    Key("limits.max_rss_bytes", "max_rss_bytes", "AGENTPLEX_MAX_RSS_BYTES"),
    Key("limits.max_processes", "max_processes", "AGENTPLEX_MAX_PROCESSES"),
    Key("limits.limit_interval", "limit_interval", "AGENTPLEX_LIMIT_INTERVAL"),
    Key("grace.terminate", "terminate_grace", "AGENTPLEX_TERMINATE_GRACE", "--grace"),
    Key("grace.drain", "drain_timeout", "AGENTPLEX_DRAIN_TIMEOUT"),
    Key("daemon.heartbeat_interval", "heartbeat_interval", "AGENTPLEX_HEARTBEAT_INTERVAL"),
    Key("daemon.env_allowlist", "env_allowlist", "AGENTPLEX_ENV_ALLOWLIST"),
    Key("daemon.env_file", "env_file", "AGENTPLEX_ENV_FILE"),
    Key("log.level", "log_level", "AGENTPLEX_LOG_LEVEL", "--log-level"),
    Key("log.format", "log_format", "AGENTPLEX_LOG_FORMAT", "--log-format"),
    Key(
        "retention.compress_after_days",
        "retention_compress_days",
        "AGENTPLEX_RETENTION_COMPRESS_AFTER_DAYS",
    ),
    Key(
        "retention.delete_after_days",
        "retention_delete_days",
        "AGENTPLEX_RETENTION_DELETE_AFTER_DAYS",
    ),
    Key(
        "retention.check_every_hours", "retention_interval_hours", "AGENTPLEX_RETENTION_EVERY_HOURS"
    ),
    Key("metrics.port", "metrics_port", "AGENTPLEX_METRICS_PORT", "--metrics-port"),
    Key("metrics.host", "metrics_host", "AGENTPLEX_METRICS_HOST"),
)
CONFIG_FIELDS = {f.name: f.type for f in msgspec.structs.fields(Config)}
NOT_KEYS = frozenset({"backend_flags", "backend_env"})
"""Config fields filled otherwise (``[backends.<id>] flags`` and ``env``)."""
_MAPPED = {key.field for key in EXPLICIT_KEYS} | NOT_KEYS
_FALLBACK_FIELDS = [name for name in CONFIG_FIELDS if name not in _MAPPED]
KEYS = tuple(key for key in EXPLICIT_KEYS if key.field in CONFIG_FIELDS) + tuple(
    Key(f"daemon.{name}", name, f"AGENTPLEX_{name.upper()}") for name in _FALLBACK_FIELDS
)
"""Every setting. A Config field without a key of its own above is ``[daemon] <field>``
(``AGENTPLEX_<FIELD>``), typed as in Config, so a new field is configurable at once."""

PATH_FIELDS = frozenset({"runtime_dir", "state_dir", "env_file"})
LIST_FIELDS = frozenset({"env_allowlist"})
BACKEND_VARIABLE = re.compile(r"^AGENTPLEX_(?P<id>.+)_(?P<what>CLI|FLAGS)$")


# ---------------------------------------------------------------------- the file


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A table of the file. A key left out is None: not set here."""


class Dirs(_Section, frozen=True):
    runtime: str | None = None
    """Sockets and the lock (default ``$XDG_RUNTIME_DIR/agentplex``)."""
    state: str | None = None
    """Transcripts (default ``$XDG_STATE_HOME/agentplex``)."""


class Limits(_Section, frozen=True):
    max_sessions: Positive | None = None
    keep_ended: Seconds | None = None
    """Seconds an ended session stays listed and in memory (0: at once)."""
    queue_limit: Positive | None = None
    max_line_bytes: Positive | None = None
    turn_timeout: Seconds | None = None
    replay_ring_chunks: Positive | None = None
    replay_ring_bytes: Positive | None = None
    max_run_time: Seconds | None = None
    """Seconds a session may live (0: no limit)."""
    idle_timeout: Seconds | None = None
    max_rss_bytes: Count | None = None
    max_processes: Count | None = None
    limit_interval: Interval | None = None


class Grace(_Section, frozen=True):
    terminate: Seconds | None = None
    """Seconds between SIGTERM and SIGKILL."""
    drain: Seconds | None = None


class _DaemonBase(_Section, frozen=True):
    heartbeat_interval: Interval | None = None
    env_allowlist: list[str] | None = None
    """More variables of the daemon's environment that sessions inherit (added to the
    default list and to each backend's credentials)."""
    env_file: str | None = None
    """A systemd-style ``KEY=VALUE`` file read as part of the daemon's environment."""


def daemon_section(fields: dict[str, Any]) -> type[_DaemonBase]:
    """``[daemon]``: its own keys plus ``fields`` (name: Config type), each optional."""
    return cast(
        "type[_DaemonBase]",
        msgspec.defstruct(
            "Daemon",
            [(name, tp | None, None) for name, tp in fields.items()],
            bases=(_DaemonBase,),
            module=__name__,
            frozen=True,
            kw_only=True,
            forbid_unknown_fields=True,
        ),
    )


if TYPE_CHECKING:
    Daemon = _DaemonBase
else:
    Daemon = daemon_section({name: CONFIG_FIELDS[name] for name in _FALLBACK_FIELDS})


class Log(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] | None = None
    format: Literal["auto", "json", "console"] | None = None


class Retention(_Section, frozen=True):
    compress_after_days: Seconds | None = None
    delete_after_days: Seconds | None = None
    check_every_hours: Interval | None = None


class Metrics(_Section, frozen=True):
    port: Port | None = None
    """Serve Prometheus metrics on this port (0: any free one); left out: no endpoint."""
    host: str | None = None


class BackendSection(_Section, frozen=True):
    cli: str | None = None
    """The backend CLI's executable (else ``$AGENTPLEX_<ID>_CLI``, else PATH)."""
    flags: list[str] | None = None
    """Extra arguments for every run of the CLI."""
    env: dict[str, str] | None = None
    """Variables set for every session of this backend (over the daemon's)."""


class FileConfig(_Section, frozen=True):
    """The whole file. ``[backends.<id>]`` tables are decoded one by one."""

    dirs: Dirs = Dirs()
    limits: Limits = Limits()
    grace: Grace = Grace()
    daemon: Daemon = Daemon()
    log: Log = Log()
    retention: Retention = Retention()
    metrics: Metrics = Metrics()
    backends: dict[str, Any] = {}
