"""``agentplex service install``: a systemd unit for this installation, reloaded and enabled.

The unit texts live here, once. ``systemd/agentplex.service`` (per user) and
``systemd/agentplex@.service`` (system-wide, one instance per user: ``agentplex@alice``)
are these texts rendered with ``ExecStart=/usr/bin/env agentplex``; ``service install``
renders them with this installation's own executable, so it runs the agentplex you ran.
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Literal

from agentplex.protocol.errors import InvalidArgument, ServiceError

Scope = Literal["user", "system"]
SHIPPED_EXEC = "/usr/bin/env agentplex"
"""ExecStart of the units shipped in ``systemd/``: agentplex from the manager's PATH."""
SYSTEMCTL_TIMEOUT = 60.0

_COMMON = """\
Type=notify
NotifyAccess=main
ExecStart=${exec_start} daemon
# systemctl reload: the daemon reads its persona templates again (sessions run on).
ExecReload=/bin/kill -HUP $$MAINPID
${environment}# The daemon ends its sessions itself (SIGTERM to each process group, SIGKILL after
# the grace period, default 5 s); systemd then only kills what is left.
KillMode=mixed
TimeoutStopSec=60
WatchdogSec=30
Restart=on-failure
RestartSec=2
# 2: bad command line, 78: bad config file; restarting cannot fix either.
RestartPreventExitStatus=2 78
# Agents work in your projects with your files: these keep them from gaining
# privileges, not from your home directory.
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
UMask=0077
"""

USER_UNIT = Template(
    """\
# agentplex, for one user: systemctl --user enable --now agentplex
# Written by `agentplex service install --user`, or copy it to ~/.config/systemd/user/.
[Unit]
Description=agentplex: supervisor for CLI coding agents

[Service]
"""
    + _COMMON
    + """
[Install]
WantedBy=default.target
"""
)

SYSTEM_UNIT = Template(
    """\
# agentplex, system-wide, one instance per user: systemctl enable --now agentplex@alice
# Written by `agentplex service install --system`, or copy it to /etc/systemd/system/.
# Clients find the instance with AGENTPLEX_RUNTIME_DIR=/run/agentplex-alice
# (or [dirs] runtime in the user's ~/.config/agentplex/config.toml).
[Unit]
Description=agentplex for %i: supervisor for CLI coding agents
After=network.target

[Service]
User=%i
Environment=AGENTPLEX_RUNTIME_DIR=%t/agentplex-%i
Environment=AGENTPLEX_STATE_DIR=%S/agentplex/%i
RuntimeDirectory=agentplex-%i
RuntimeDirectoryMode=0700
StateDirectory=agentplex/%i
StateDirectoryMode=0700
"""
    + _COMMON
    + """\
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"""
)

UNIT_NAMES: dict[Scope, str] = {"user": "agentplex.service", "system": "agentplex@.service"}


def render(scope: Scope, exec_start: str = SHIPPED_EXEC, path: str | None = None) -> str:
    """The unit text; ``path`` becomes its PATH (the agents' CLIs are looked up there)."""
    environment = ""
    if path is not None:
        environment = (
            "# Your PATH when this was installed, so the agents' CLIs are found.\n"
            f'Environment="PATH={_escape(path)}"\n'
        )
    template = USER_UNIT if scope == "user" else SYSTEM_UNIT
    return template.substitute(exec_start=exec_start, environment=environment)


def this_exec_start() -> str:
    """This installation's console script, else this interpreter with ``-m``."""
    script = Path(sys.executable).parent / "agentplex"
    if os.access(script, os.X_OK) and _runs_this_interpreter(script):
        return _quote(str(script))
    return f"{_quote(sys.executable)} -m agentplex.cli.main"


def _runs_this_interpreter(script: Path) -> bool:
    """The script's ``#!`` names a python in our own bin dir that is our interpreter."""
    try:
        with script.open("rb") as f:
            interpreter = Path(f.readline().decode(errors="replace")[2:].strip())
        ours = Path(sys.executable)
        return interpreter.parent == ours.parent and os.path.samefile(interpreter, ours)
    except OSError:
        return False


def unit_dir(scope: Scope) -> Path:
    if scope == "system":
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


@dataclass(frozen=True)
class Plan:
    """What ``install`` writes and runs."""

    scope: Scope
    path: Path
    text: str
    commands: list[list[str]]
    instance: str


def plan(scope: Scope, *, directory: Path | None, enable: bool, user: str | None) -> Plan:
    name = UNIT_NAMES[scope]
    path = (directory or unit_dir(scope)) / name
    captured = os.environ.get("PATH") if scope == "user" else None
    text = render(scope, this_exec_start(), captured)
    systemctl = ["systemctl", "--user"] if scope == "user" else ["systemctl"]
    instance = name
    if scope == "system":
        instance = f"agentplex@{system_user(user)}.service"
    elif user is not None:
        raise InvalidArgument("--as names the user of a system instance: use it with --system")
    commands = [[*systemctl, "daemon-reload"], [*systemctl, "enable", instance]] if enable else []
    return Plan(scope, path, text, commands, instance)


def system_user(user: str | None) -> str:
    """The user a system instance runs as (``--as``, else whoever ran sudo, else us),
    refused unless it exists: systemd would only fail when the instance starts."""
    name = user or os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise InvalidArgument(
            f"no such user {name!r} on this machine (--as names the user the instance runs as)"
        ) from None
    return name


def install(p: Plan, *, dry_run: bool) -> list[str]:
    """Write the unit and run the commands; returns what was done, one line each."""
    if dry_run:
        report = [f"would write {p.path}:", p.text.rstrip()]
        return report + [f"would run: {' '.join(c)}" for c in p.commands]
    _write(p.path, p.text)
    exec_line = next(line for line in p.text.splitlines() if line.startswith("ExecStart="))
    done = [f"wrote {p.path} ({exec_line})"]
    if not p.commands:
        return done
    if shutil.which(p.commands[0][0]) is None:
        raise ServiceError(_not_enabled(done, p, "systemctl is not installed"))
    for command in p.commands:
        _systemctl(command, done, p)
    start = "systemctl --user start" if p.scope == "user" else "systemctl start"
    return [*done, f"start it now with: {start} {p.instance}"]


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    except OSError as exc:
        hint = " (run it with sudo)" if isinstance(exc, PermissionError) else ""
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc}{hint}") from exc


def _systemctl(command: list[str], done: list[str], p: Plan) -> None:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(_not_enabled(done, p, f"{' '.join(command)}: {exc}")) from exc
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise ServiceError(_not_enabled(done, p, f"{' '.join(command)} failed: {why}"))
    done.append(f"ran {' '.join(command)}")


def _not_enabled(done: list[str], p: Plan, why: str) -> str:
    manual = "; ".join(" ".join(c) for c in p.commands)
    return "\n".join(
        [*done, f"not enabled: {why}", f"when systemd runs as your service manager: {manual}"]
    )


def _escape(value: str) -> str:
    """A value for a double-quoted systemd assignment (``%`` is a specifier)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def _quote(word: str) -> str:
    """An ExecStart word; quoted only when it must be."""
    if any(c in word for c in " \t\"'\\%$;"):
        return '"' + _escape(word).replace("$", "$$") + '"'
    return word


# ---------------------------------------------------------------------- CLI


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("service", help="install agentplex as a systemd service")
    actions = s.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    i = actions.add_parser(
        "install",
        help="write the unit for this installation, reload systemd and enable it",
        description="Write a systemd unit whose ExecStart is this installation's agentplex, "
        "run systemctl daemon-reload and enable it, and say what was done.",
    )
    scope = i.add_mutually_exclusive_group()
    for flag, help_text in (
        ("user", "a unit of your own service manager (default)"),
        ("system", "agentplex@.service in /etc/systemd/system, enabled for --as USER"),
    ):
        scope.add_argument(
            f"--{flag}", dest="scope", action="store_const", const=flag, help=help_text
        )
    i.set_defaults(scope="user")
    i.add_argument("--as", dest="as_user", metavar="USER", help="system instance's user")
    i.add_argument("--unit-dir", type=Path, help="write the unit here instead")
    i.add_argument("--no-enable", action="store_true", help="only write the unit")
    i.add_argument("--dry-run", "-n", action="store_true", help="show what would be done")


def run(args: argparse.Namespace) -> int:
    """``agentplex service install``."""
    p = plan(args.scope, directory=args.unit_dir, enable=not args.no_enable, user=args.as_user)
    for line in install(p, dry_run=args.dry_run):
        print(line)
    return 0
