"""``agentplex doctor``: each check, and what to fix when one fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import DaemonProcess


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
