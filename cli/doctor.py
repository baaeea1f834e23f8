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

from agentplex.protocol import DaemonInfo
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
    )
    d.add_argument("--json", action="store_true")


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
    daemon, info = _daemon(RuntimePaths(runtime_dir))
    yield daemon
    yield _descriptors(info)
    state_dir = default_state_dir()
    yield _state_dir(state_dir)
    yield _disk(state_dir)
    yield _spawning()
    yield from _backends()


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

    start = "agentplex daemon &  (or: agentplex service install)"
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


def _backends() -> Iterator[Check]:
    from agentplex.supervisor.backends import BackendRegistry

    for b in BackendRegistry.with_defaults().describe():
        name = f"backend {b.id}"
        if b.available:
            where = f" at {b.executable}" if b.executable else ""
            yield Check("ok", name, f"version {b.version or 'unknown'}{where}")
        else:
            fix = f"install it, or set [backends.{b.id}] cli = ... in the config file"
            yield Check("warn", name, b.problem or "not available", fix)


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
