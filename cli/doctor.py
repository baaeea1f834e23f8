"""``agentplex doctor``: check this machine's set-up and say what to fix."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from agentplex.protocol import BackendInfo, DaemonInfo
from agentplex.protocol.errors import AgentplexError, ConfigError, DaemonNotRunning
from agentplex.protocol.paths import (
    RuntimePaths,
    default_runtime_dir,
    default_state_dir,
    ipc_endpoint,
)

Status = Literal["ok", "warn", "fail"]
MIN_FREE_BYTES = 100 << 20
LOW_FREE_BYTES = 1 << 30
PING_TIMEOUT = 3.0
BACKENDS_TIMEOUT = 30.0
"""The daemon runs each CLI's ``--version`` to list its backends."""
FEW_FDS = 4096
"""Below this many descriptors, a daemon has room for only a few hundred sessions."""
FD_FIX = "raise the hard limit the daemon gets: LimitNOFILE= in its unit, or ulimit -Hn"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it stands, and what to do about it."""

    status: Status
    name: str
    detail: str
    fix: str = ""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "doctor",
        help="check the runtime and state dirs, the daemon, disk space and backend CLIs",
        description="Check everything agentplex needs; exit 1 if a check fails (warnings "
        "alone exit 0).",
    )
    d.add_argument("--json", action="store_true", help="the checks as a JSON array")


def run(args: argparse.Namespace) -> int:
    """Print every check; exit 1 if any failed."""
    checks = list(diagnose(args.config))
    if args.json:
        print(json.dumps([asdict(c) for c in checks]))
    else:
        for c in checks:
            label = c.status.upper() if c.status == "fail" else c.status
            print(f"{label:<5} {c.name:<14} {c.detail}")
            if c.fix:
                print(f"{'':<5} {'':<14} fix: {c.fix}")
    return 1 if any(c.status == "fail" for c in checks) else 0


def diagnose(config_path: str | None = None) -> Iterator[Check]:
    """Every check, in the order a person would look."""
    yield from _config(config_path)
    runtime_dir = default_runtime_dir()
    yield _runtime_dir(runtime_dir)
    paths = RuntimePaths(runtime_dir)
    daemon, info = _daemon(paths)
    yield daemon
    yield _descriptors(info)
    state_dir = Path(info.state_dir) if info else default_state_dir()  # the daemon's own
    yield _state_dir(state_dir)
    yield _disk(state_dir)
    yield _spawning()
    if info is None:
        yield from _backends_here()
    else:
        yield from _backends_of(paths, info)


def _config(path: str | None) -> Iterator[Check]:
    from agentplex.supervisor import config_file

    try:
        resolved = config_file.load(path)
    except ConfigError as exc:
        yield Check("fail", "config", exc.message, "correct the file (see: agentplex config show)")
        return
    config_file.export_to_environment(resolved)
    if resolved.file is None:
        yield Check("ok", "config", f"no config file at {config_file.default_path()}: defaults")
    else:
        yield Check("ok", "config", str(resolved.file))


def _runtime_dir(path: Path) -> Check:
    try:
        ipc_endpoint(path / "control.sock")
    except ValueError as exc:
        return Check("fail", "runtime dir", str(exc), "set a shorter AGENTPLEX_RUNTIME_DIR")
    if not path.exists():
        parent = _existing_parent(path)
        if not os.access(parent, os.W_OK):
            return Check(
                "fail",
                "runtime dir",
                f"{path} is missing and {parent} is not writable",
                f"create it: mkdir -m 700 -p {path}",
            )
        return Check("ok", "runtime dir", f"{path} (created when the daemon starts)")
    return _private_dir("runtime dir", path)


def _private_dir(name: str, path: Path) -> Check:
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        return Check("fail", name, f"{path} is not a directory", f"remove it: rm {path}")
    if st.st_uid != os.getuid():
        return Check(
            "fail",
            name,
            f"{path} belongs to uid {st.st_uid}, not to you",
            "use a dir of your own (AGENTPLEX_RUNTIME_DIR / AGENTPLEX_STATE_DIR)",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check(
            "warn",
            name,
            f"{path} has mode {mode:04o}; others can look in",
            f"chmod 700 {path} (the daemon tightens it when it starts)",
        )
    return Check("ok", name, f"{path} (mode {mode:04o}, yours)")


def _daemon(paths: RuntimePaths) -> tuple[Check, DaemonInfo | None]:
    """The daemon's check, and what it said of itself if it answered."""
    from agentplex.client.sync_client import Client

    start = "agentplex daemon --detach  (or: agentplex service install)"
    if not paths.control.exists():
        missing = f"not running (no socket in {paths.runtime_dir})"
        return Check("warn", "daemon", missing, start), None
    for sock in (paths.control, paths.events):
        if not sock.exists() or not stat.S_ISSOCK(sock.stat().st_mode):
            return Check("fail", "daemon", f"{sock} is missing or not a socket", start), None
        if stat.S_IMODE(sock.stat().st_mode) & 0o077:
            return Check("fail", "daemon", f"{sock} is open to others", f"chmod 600 {sock}"), None
    try:
        with Client(paths.runtime_dir, timeout=PING_TIMEOUT) as client:
            info = client.ping()
    except DaemonNotRunning as exc:
        return Check("warn", "daemon", exc.message, start), None
    except AgentplexError as exc:
        fix = "see its log: journalctl --user -u agentplex"
        return Check("fail", "daemon", exc.message, fix), None
    detail = (
        f"pid {info.pid}, version {info.version}, "
        f"{info.sessions} live sessions, sockets in {paths.runtime_dir}"
    )
    return Check("ok", "daemon", detail), info


def _descriptors(info: DaemonInfo | None) -> Check:
    """The running daemon's file descriptors; else what a daemon started here would get
    (it raises its soft limit to the hard one)."""
    from agentplex.supervisor.descriptors import PER_SESSION

    if info is None or not info.fd_limit:  # no daemon, or one too old to say
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if hard == resource.RLIM_INFINITY else max(soft, hard)
        detail = f"a daemon started here can open {limit} (soft limit now {soft})"
        status: Status = "warn" if limit < FEW_FDS else "ok"
        return Check(status, "descriptors", detail, FD_FIX if status == "warn" else "")
    usable = info.fd_limit - info.fd_reserve
    fit = max(0, usable // PER_SESSION)
    detail = (
        f"{info.fds_open} of {info.fd_limit} open, {info.fd_reserve} kept free "
        f"(room for about {fit} sessions)"
    )
    if info.fds_open + PER_SESSION > usable:
        return Check("fail", "descriptors", f"{detail}: new sessions are refused", FD_FIX)
    if info.fd_limit < FEW_FDS:
        return Check("warn", "descriptors", detail, FD_FIX)
    return Check("ok", "descriptors", detail)


def _state_dir(path: Path) -> Check:
    if not path.exists():
        parent = _existing_parent(path)
        if not os.access(parent, os.W_OK):
            return Check(
                "fail",
                "state dir",
                f"{path} is missing and {parent} is not writable",
                f"create it: mkdir -m 700 -p {path}",
            )
        return Check("ok", "state dir", f"{path} (created when the daemon starts)")
    if not os.access(path, os.W_OK | os.X_OK):
        return Check("fail", "state dir", f"{path} is not writable", f"chown -R $USER {path}")
    return _private_dir("state dir", path)


def _disk(path: Path) -> Check:
    usage = shutil.disk_usage(_existing_parent(path))
    free = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB"
    fix = "free some space, or: agentplex purge --before 30d"
    if usage.free < MIN_FREE_BYTES:
        return Check("fail", "disk", f"{free}: transcripts cannot be written", fix)
    if usage.free < LOW_FREE_BYTES or usage.free < usage.total * 0.05:
        return Check("warn", "disk", f"{free}: running low", fix)
    return Check("ok", "disk", free)


def _spawning() -> Check:
    from agentplex.supervisor.process_group import DeathPact

    pact = DeathPact.detect()
    if pact.wrapper:
        return Check("ok", "spawning", f"agents die with the daemon through {pact.wrapper[0]}")
    fix = "install util-linux >= 2.33 (setpriv --pdeathsig) for faster spawns"
    return Check("warn", "spawning", "no setpriv: each agent is forked with a preexec_fn", fix)


def _backends_here() -> Iterator[Check]:
    """No daemon answered: what a daemon started from this shell would find."""
    from agentplex.supervisor.backends import BackendRegistry

    for b in BackendRegistry.with_defaults().describe():
        name = f"backend {b.id}"
        if b.available:
            where = f" at {b.executable}" if b.executable else ""
            detail = f"version {b.version or 'unknown'}{where}"
            if b.credentials and not b.credentials_found:
                fix = f"set one of {', '.join(b.credentials)}, or log in with the CLI"
                yield Check("warn", name, f"{detail}; no credentials found here", fix)
            else:
                found = f"; credentials: {', '.join(b.credentials_found)}" if b.credentials else ""
                yield Check("ok", name, detail + found)
        else:
            fix = f"install it, or set [backends.{b.id}] cli = ... in the config file"
            yield Check("warn", name, b.problem or "not available", fix)


def _backends_of(paths: RuntimePaths, info: DaemonInfo) -> Iterator[Check]:
    """The running daemon's backends, as it sees them: its PATH, its environment and the
    config file it read at start (not this shell's, which may differ)."""
    from agentplex.client.sync_client import Client
    from agentplex.supervisor.backends import BackendRegistry

    try:
        with Client(paths.runtime_dir, timeout=BACKENDS_TIMEOUT) as client:
            remote = client.backends()
    except AgentplexError as exc:
        yield Check("fail", "backends", f"daemon {info.pid} did not list them: {exc.message}")
        return
    here = {b.id: b for b in BackendRegistry.with_defaults().describe()}
    unit = systemd_unit(info.pid)
    for b in remote:
        yield _daemon_backend(b, here.get(b.id), info.pid, unit)


def _daemon_backend(
    b: BackendInfo, here: BackendInfo | None, pid: int, unit: SystemdUnit | None
) -> Check:
    name = f"backend {b.id}"
    if b.available:
        where = f" at {b.executable}" if b.executable else ""
        detail = f"version {b.version or 'unknown'}{where} (daemon {pid})"
        if not b.credentials:  # it needs none (demo, exec) or does not say
            return Check("ok", name, detail)
        if b.credentials_found:
            return Check("ok", name, f"{detail}; credentials: {', '.join(b.credentials_found)}")
        fix = (
            f"give the daemon one of {', '.join(b.credentials)} ({daemon_environment(unit)}), "
            "or log in with the CLI as the daemon's user; see the README's Credentials"
        )
        return Check("warn", name, f"{detail}; no credentials found", fix)
    detail = f"daemon {pid} cannot run it: {b.problem or 'not available'}"
    if here is not None and here.available and here.executable:
        detail += (
            f"; this shell finds it at {here.executable}, but the daemon has its own "
            "environment (it does not see variables set in this shell)"
        )
    return Check("warn", name, detail, where_to_set(b.id, unit))


@dataclass(frozen=True)
class SystemdUnit:
    """The systemd unit a daemon runs in."""

    name: str
    user: bool
    """A unit of a user's service manager (``systemctl --user``)."""

    @property
    def systemctl(self) -> str:
        return "systemctl --user" if self.user else "sudo systemctl"


def systemd_unit(pid: int) -> SystemdUnit | None:
    """The ``.service`` whose cgroup holds ``pid`` (None: not started by systemd)."""
    try:
        return parse_unit(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None


def parse_unit(cgroups: str) -> SystemdUnit | None:
    """The service unit named in a ``/proc/PID/cgroup`` text, if any."""
    for line in cgroups.splitlines():
        _, _, cgroup = line.partition("::")  # the cgroup v2 line
        parts = cgroup.split("/")
        services = [p for p in parts if p.endswith(".service") and not p.startswith("user@")]
        if services:
            return SystemdUnit(services[-1], user=any(p.startswith("user@") for p in parts))
    return None


def daemon_environment(unit: SystemdUnit | None) -> str:
    """Where the daemon's environment is set."""
    if unit is not None:
        return f"{unit.systemctl} edit {unit.name}: Environment= or EnvironmentFile=; a restart"
    return "in the environment it is started from, or [daemon] env_file; a restart"


def where_to_set(backend_id: str, unit: SystemdUnit | None) -> str:
    """Where a backend's CLI is set for the daemon, which reads it when it starts."""
    from agentplex.supervisor import config_file

    variable = f"AGENTPLEX_{backend_id.upper()}_CLI"
    in_file = (
        f'[backends.{backend_id}] cli = "/path/to/cli" in the daemon\'s config file '
        f"(by default {config_file.default_path()})"
    )
    if unit is not None:
        return (
            f"{unit.systemctl} edit {unit.name} and add [Service] "
            f"Environment={variable}=/path/to/cli (or a PATH that has it), or set {in_file}; "
            f"then {unit.systemctl} restart {unit.name}"
        )
    return (
        f"set {variable}=/path/to/cli (or a PATH that has it) in the environment the daemon "
        f"is started from, or set {in_file}; then restart the daemon"
    )


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
