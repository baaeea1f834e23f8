"""The daemon's configuration: one Struct, filled from flags and the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from agentplex.protocol.paths import RuntimePaths, default_runtime_dir, default_state_dir

DEFAULT_ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything the daemon can be told. Defaults suit one person's machine."""

    runtime_dir: str = ""
    state_dir: str = ""
    terminate_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL when a session is terminated."""
    max_sessions: int = 1000
    """Sessions that may run at once (interrupted and ended ones do not count)."""
    keep_ended: float = 4 * 3600.0
    """Seconds an ended session stays in ``list`` and in memory (its replay ring, its info);
    then only its transcript and its line in the session table remain (``list --all``,
    ``replay`` and ``inspect`` still find it). 0: at once; inf: never."""
    fd_reserve: int = 128
    """File descriptors kept free for client connections, replays and stopping processes:
    a start that could eat into them is refused (``too_many_open_files``). The daemon
    raises its soft RLIMIT_NOFILE to the hard limit; each session holds up to 4."""
    queue_limit: int = 32
    """Messages a session holds while its agent is busy; beyond this a send is refused."""
    max_line_bytes: int = 1 << 20
    """A line longer than this *once logged* (JSON-escaped, plus base64 if it is not UTF-8)
    is cut, before it is escaped, into chunks that each fit (marked partial)."""
    max_run_time: float = 0.0
    """Seconds a session may live (0: no limit)."""
    idle_timeout: float = 0.0
    """Seconds a session may go without output or input (0: no limit)."""
    max_rss_bytes: int = 0
    """Resident memory of all a session's processes together (0: no limit)."""
    max_processes: int = 512
    """Processes a session may have at once: stops fork bombs (0: no limit)."""
    limit_interval: float = 2.0
    """How often the limits are checked."""
    turn_timeout: float = 1800.0
    """Longest a turn-based agent process may run; then it is stopped and the turn fails
    (some CLIs retry a dead API for ever)."""
    replay_ring_chunks: int = 4096
    replay_ring_bytes: int = 1 << 20
    """Per session, the newest chunks kept in memory for replay (the rest is read from
    the transcript)."""
    agents_outlive_daemon: bool = False
    """Let agents run on if the daemon dies (a restarted daemon re-adopts them); by default
    they get SIGKILL with it, so nothing runs unowned."""
    stop_turn_leftovers: bool = True
    """End whatever a turn-based agent's process left running when its turn ends."""
    process_tracking: Literal["auto", "cgroup", "tree"] = "auto"
    """How a session's processes are found: ``cgroup`` (a cgroup v2 per session, exact;
    needs root or systemd ``Delegate=yes``), ``tree`` (the process tree, each leader a
    child subreaper), or ``auto`` (a cgroup where the daemon may make one, else the tree)."""
    pub_high_water_mark: int = 10_000
    """Most events the daemon queues for one subscriber that is not reading, before it
    drops more for that subscriber (it refills them with ``replay``). The queue is also
    bounded in bytes: see ``subscriber_buffer_bytes``."""
    pub_max_message_bytes: int = 128 << 10
    """A chunk message larger than this is not sent on the events socket: an ``elided``
    marker (same seq, no text) goes instead, and subscribers fetch it with ``replay``."""
    subscriber_buffer_bytes: int = 64 << 20
    """Most bytes of events queued for one subscriber that is not reading: the events
    socket's high-water mark is this over ``pub_max_message_bytes`` (at most
    ``pub_high_water_mark``), since ZeroMQ counts messages, not bytes."""
    replay_page_bytes: int = 4 << 20
    """A ``replay`` page stops before its chunks pass this many bytes (it always holds at
    least one message, which ``max_line_bytes`` bounds)."""
    client_buffer_bytes: int = 64 << 20
    """Most bytes of replies queued for one control client that does not read them: the
    control socket's high-water mark is this over the largest reply (a replay page);
    past it replies to that client are dropped (its requests time out)."""
    heartbeat_interval: float = 2.0
    drain_timeout: float = 0.5
    """How long to keep reading a turn's pipes after its process exited, if a leftover
    descendant holds them open."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    env_allowlist: tuple[str, ...] = ()
    """Variables of the daemon's environment that sessions inherit, beyond
    ``DEFAULT_ENV_ALLOWLIST`` and each backend's declared credentials (it extends them)."""
    env_file: str | None = None
    """A file of ``KEY=VALUE`` lines (systemd ``EnvironmentFile=`` syntax) the daemon reads
    as if they were in its environment (its real environment wins), for sessions to take."""
    backend_env: dict[str, dict[str, str]] = {}
    """Variables set for every session of a backend, by backend id (``[backends.<id>] env``)."""
    # -- service settings; the file keys are in config_schema.KEYS
    metrics_port: int | None = None
    """Serve Prometheus metrics on ``metrics_host:metrics_port`` (0: any free port); None: off."""
    metrics_host: str = "127.0.0.1"
    retention_compress_days: float | None = None
    """Gzip finished transcripts last written more than this many days ago; None: never."""
    retention_delete_days: float | None = None
    """Delete transcripts last written more than this many days ago; None: never."""
    retention_interval_hours: float = 24.0
    backend_flags: dict[str, tuple[str, ...]] = {}
    """Extra arguments for each backend's CLI, by backend id."""

    def __post_init__(self) -> None:
        if not self.runtime_dir:
            self.runtime_dir = str(default_runtime_dir())
        if not self.state_dir:
            self.state_dir = str(default_state_dir())

    @property
    def paths(self) -> RuntimePaths:
        return RuntimePaths(Path(self.runtime_dir))

    @property
    def sessions_dir(self) -> Path:
        return Path(self.state_dir) / "sessions"

    @property
    def scratch_dir(self) -> Path:
        return Path(self.state_dir) / "backends"
