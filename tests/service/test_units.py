"""The systemd units: shipped ones match the templates, every unit passes
``systemd-analyze verify``, and ``service install`` writes, reloads and enables."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from agentplex.cli.service import SHIPPED_EXEC, render, this_exec_start

SHIPPED = {
    "user": REPO / "systemd" / "agentplex.service",
    "system": REPO / "systemd" / "agentplex@.service",
}
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None and not os.environ.get("CI"),
    reason="systemd-analyze is not installed (CI installs it)",
)


def verify(unit: Path, scope: str, runtime_dir: Path) -> None:
    """``systemd-analyze verify``: any message about the unit fails the test."""
    assert ANALYZE is not None, "systemd-analyze is missing (apt-get install systemd)"
    argv = [ANALYZE, *(["--user"] if scope == "user" else []), "verify", str(unit)]
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime_dir), SYSTEMD_LOG_LEVEL="notice")
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=env, cwd=unit.parent
    )
    assert done.returncode == 0 and unit.name not in done.stderr, done.stderr


def install(tmp: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "xdg"))
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", "service", "install", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("scope", ["user", "system"])
def test_shipped_units_are_the_templates(scope: str) -> None:
    assert SHIPPED[scope].read_text() == render(scope)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", ["user", "system"])
def test_units_say_notify_mixed_kill_restart_and_watchdog(scope: str) -> None:
    lines = set(SHIPPED[scope].read_text().splitlines())
    expected = {
        "Type=notify",
        "KillMode=mixed",
        "Restart=on-failure",
        "WatchdogSec=30",
        f"ExecStart={SHIPPED_EXEC} daemon",
        "NoNewPrivileges=yes",
    }
    assert expected <= lines


@needs_analyze
@pytest.mark.parametrize("scope", ["user", "system"])
def test_shipped_units_pass_systemd_analyze_verify(scope: str, short_tmp: Path) -> None:
    verify(SHIPPED[scope], scope, short_tmp)


DASHBOARD = REPO / "systemd" / "agentplex-ui.service"


@needs_analyze
def test_the_dashboard_unit_passes_systemd_analyze_verify(short_tmp: Path) -> None:
    verify(DASHBOARD, "user", short_tmp)


def test_the_dashboard_unit_follows_the_daemon_and_serves_on_8765() -> None:
    lines = set(DASHBOARD.read_text().splitlines())
    expected = {
        "Wants=agentplex.service",
        "After=agentplex.service",
        f"ExecStart={SHIPPED_EXEC} ui --port 8765",
        "StandardOutput=null",  # the URL carries the token: not into the journal
        "Restart=on-failure",
        "NoNewPrivileges=yes",
    }
    assert expected <= lines


@needs_analyze
@pytest.mark.parametrize("scope", ["user", "system"])
def test_installed_units_pass_systemd_analyze_verify(scope: str, short_tmp: Path) -> None:
    done = install(short_tmp, f"--{scope}", "--unit-dir", str(short_tmp / "units"), "--no-enable")
    assert done.returncode == 0, done.stderr
    unit = short_tmp / "units" / ("agentplex.service" if scope == "user" else "agentplex@.service")
    assert f"ExecStart={this_exec_start()} daemon" in unit.read_text()
    assert done.stdout == f"wrote {unit} (ExecStart={this_exec_start()} daemon)\n"
    verify(unit, scope, short_tmp)
    if scope == "system":
        instance = unit.with_name("agentplex@alice.service")
        shutil.copy(unit, instance)
        verify(instance, scope, short_tmp)


def fake_systemctl(directory: Path, script: str) -> str:
    """A PATH whose ``systemctl`` is ``script``; returns the PATH."""
    directory.mkdir()
    exe = directory / "systemctl"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


def test_install_reloads_and_enables_and_says_so(short_tmp: Path) -> None:
    log = short_tmp / "calls"
    path = fake_systemctl(short_tmp / "bin", f'echo "$@" >> {log}')
    done = install(short_tmp, path=path)
    assert done.returncode == 0, done.stderr
    unit = short_tmp / "xdg" / "systemd" / "user" / "agentplex.service"
    assert done.stdout.splitlines() == [
        f"wrote {unit} (ExecStart={this_exec_start()} daemon)",
        "ran systemctl --user daemon-reload",
        "ran systemctl --user enable agentplex.service",
        "start it now with: systemctl --user start agentplex.service",
    ]
    assert log.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable agentplex.service",
    ]
    assert f'Environment="PATH={path}"' in unit.read_text()


def test_without_a_running_systemd_the_unit_is_written_and_the_failure_said(
    short_tmp: Path,
) -> None:
    path = fake_systemctl(
        short_tmp / "bin", 'echo "Failed to connect to bus: No medium found" >&2; exit 1'
    )
    user = getpass.getuser()  # --as must name a user that exists
    done = install(short_tmp, "--system", "--as", user, "--unit-dir", str(short_tmp), path=path)
    assert done.returncode == 69
    assert (short_tmp / "agentplex@.service").exists()
    assert "not enabled: systemctl daemon-reload failed: Failed to connect to bus" in done.stderr
    assert f"systemctl daemon-reload; systemctl enable agentplex@{user}.service" in done.stderr


def test_a_system_instance_for_a_user_that_does_not_exist_is_refused(short_tmp: Path) -> None:
    log = short_tmp / "calls"
    path = fake_systemctl(short_tmp / "bin", f'echo "$@" >> {log}')
    units = short_tmp / "units"
    done = install(
        short_tmp, "--system", "--as", "nosuchuser", "--unit-dir", str(units), path=path
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "agentplex service: no such user 'nosuchuser' on this machine "
        "(--as names the user the instance runs as)\n"
    )
    assert not units.exists() and not log.exists()  # nothing written, systemctl never run


def test_as_without_system_is_refused(short_tmp: Path) -> None:
    done = install(short_tmp, "--as", getpass.getuser(), "--dry-run")
    assert done.returncode == 2
    assert "--as names the user of a system instance: use it with --system" in done.stderr


@pytest.mark.parametrize("scope", ["user", "system"])
def test_systemctl_reload_sends_the_daemon_sighup(scope: str) -> None:
    assert "ExecReload=/bin/kill -HUP $MAINPID" in SHIPPED[scope].read_text().splitlines()


def test_dry_run_writes_nothing(short_tmp: Path) -> None:
    done = install(short_tmp, "--dry-run")
    assert done.returncode == 0
    assert "would run: systemctl --user enable agentplex.service" in done.stdout
    assert not (short_tmp / "xdg").exists()
