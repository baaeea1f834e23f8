"""``agentplex doctor``: each check, and what to fix when one fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import DaemonProcess, start_daemon

from agentplex.cli.doctor import SystemdUnit, parse_unit, where_to_set


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    done = subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def test_a_healthy_set_up_passes_every_check(daemon: DaemonProcess, short_tmp: Path) -> None:
    code, checks = doctor(dict(daemon.env, XDG_CONFIG_HOME=str(short_tmp / "xdg")))
    assert code == 0
    healthy = ("config", "runtime dir", "daemon", "state dir", "disk", "spawning", "backend demo")
    for name in healthy:
        assert checks[name]["status"] == "ok", checks[name]
    assert f"pid {daemon.process.pid}" in checks["daemon"]["detail"]
    assert checks["runtime dir"]["detail"] == f"{daemon.runtime_dir} (mode 0700, yours)"


def test_problems_come_with_a_fix(short_tmp: Path) -> None:
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    config = short_tmp / "config.toml"
    config.write_text("[limits]\nmax_sessions = -1\n")
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(runtime),
        AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
        AGENTPLEX_CONFIG=str(config),
        AGENTPLEX_CODEX_CLI=str(short_tmp / "no-codex"),
        PATH=str(Path(sys.executable).parent),  # python, but no setpriv
    )
    code, checks = doctor(env)
    assert code == 1
    assert checks["config"]["status"] == "fail"
    assert "limits.max_sessions: expected int >= 1" in checks["config"]["detail"]
    assert checks["runtime dir"] == {
        "status": "warn",
        "name": "runtime dir",
        "detail": f"{runtime} has mode 0755; others can look in",
        "fix": f"chmod 700 {runtime} (the daemon tightens it when it starts)",
    }
    assert checks["daemon"]["status"] == "warn" and "agentplex daemon" in checks["daemon"]["fix"]
    assert checks["state dir"]["detail"].endswith("(created when the daemon starts)")
    assert checks["backend codex"]["status"] == "warn"
    assert "[backends.codex] cli" in checks["backend codex"]["fix"]
    assert checks["spawning"]["status"] == "warn" and "setpriv" in checks["spawning"]["fix"]


# ---------------------------------------------------------- backends as the daemon sees them


def fake_cli(directory: Path) -> Path:
    """An executable that stands for the codex CLI (doctor only looks for it)."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "codex"
    exe.write_text("#!/bin/sh\necho codex-fake\n")
    exe.chmod(0o755)
    return exe


def test_a_cli_and_a_key_set_only_in_the_daemons_environment_are_ok(short_tmp: Path) -> None:
    cli = fake_cli(short_tmp / "bin")
    daemon_env = {"AGENTPLEX_CODEX_CLI": str(cli), "OPENAI_API_KEY": "sk-test"}
    daemon = start_daemon(short_tmp, env=daemon_env)
    try:
        env = dict(daemon.env, XDG_CONFIG_HOME=str(short_tmp / "xdg"))
        for name in daemon_env:
            env.pop(name, None)  # this shell knows neither
        _, checks = doctor(env)
        codex = checks["backend codex"]
        assert codex["status"] == "ok", codex
        assert codex["detail"].startswith(
            f"version unknown at {cli} (daemon {daemon.process.pid}); credentials: "
        )
        assert "OPENAI_API_KEY" in codex["detail"] and "sk-test" not in codex["detail"]
    finally:
        assert daemon.stop() == 0


def test_a_cli_set_only_in_this_shell_is_a_warning_that_says_where_the_daemon_reads_it(
    short_tmp: Path,
) -> None:
    cli = fake_cli(short_tmp / "bin")
    daemon = start_daemon(short_tmp)  # without AGENTPLEX_CODEX_CLI, codex not on its PATH
    try:
        env = dict(daemon.env, XDG_CONFIG_HOME=str(short_tmp / "xdg"))
        env["AGENTPLEX_CODEX_CLI"] = str(cli)
        _, checks = doctor(env)
        codex = checks["backend codex"]
        assert codex["status"] == "warn", codex
        pid = daemon.process.pid
        assert codex["detail"].startswith(f"daemon {pid} cannot run it: 'codex' not found on PATH")
        assert codex["detail"].endswith(
            f"; this shell finds it at {cli}, but the daemon has its own environment "
            "(it does not see variables set in this shell)"
        )
        config = short_tmp / "xdg" / "agentplex" / "config.toml"
        assert codex["fix"] == (
            "set AGENTPLEX_CODEX_CLI=/path/to/cli (or a PATH that has it) in the environment "
            'the daemon is started from, or set [backends.codex] cli = "/path/to/cli" in the '
            f"daemon's config file (by default {config}); then restart the daemon"
        )
        listed = daemon.cli("backends")  # the daemon's view, with a header row
        assert listed.stdout.splitlines()[0].split() == [
            "BACKEND",
            "MODES",
            "STATUS",
            "VERSION",
            "WHERE",
        ]
        [row] = [line for line in listed.stdout.splitlines() if line.startswith("codex ")]
        assert row.split()[2] == "missing"
    finally:
        assert daemon.stop() == 0


def test_the_fix_names_the_systemd_unit_a_daemon_runs_in() -> None:
    cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/agentplex.service\n"
    assert parse_unit(cgroup) == SystemdUnit("agentplex.service", user=True)
    assert parse_unit("0::/system.slice/system-agentplex.slice/agentplex@bob.service\n") == (
        SystemdUnit("agentplex@bob.service", user=False)
    )
    assert parse_unit("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    fix = where_to_set("claude", SystemdUnit("agentplex.service", user=True))
    assert fix.startswith(
        "systemctl --user edit agentplex.service and add [Service] "
        "Environment=AGENTPLEX_CLAUDE_CLI=/path/to/cli"
    )
    assert fix.endswith("then systemctl --user restart agentplex.service")
