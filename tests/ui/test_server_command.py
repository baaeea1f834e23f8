"""The ``agentplex ui`` command line: a port in use or out of range, the extra missing, its
help, every other command working without the extra, and the token kept in the state dir."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support import DaemonProcess
from ui_support import UiProcess, running_ui

DEADLINE = 60.0


@pytest.fixture
def ui(daemon: DaemonProcess) -> Iterator[UiProcess]:
    with running_ui(daemon) as process:
        yield process


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentplex.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
    )


def test_a_port_in_use_or_out_of_range_is_one_line_and_an_exit_code(ui: UiProcess) -> None:
    busy = cli("ui", "--port", str(ui.port))
    assert busy.returncode == 69
    assert busy.stderr.count("\n") == 1 and "in use" in busy.stderr and "--port" in busy.stderr
    wrong = cli("ui", "--port", "70000")
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "0 to 65535" in wrong.stderr


def test_without_the_ui_extra_the_command_says_how_to_install_it() -> None:
    # starlette made unimportable, as on an install without the extra
    program = (
        "import sys; sys.modules['starlette'] = None\n"
        "from agentplex.cli.main import run; sys.exit(run(['ui', '--port', '0']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 69
    assert done.stderr.count("\n") == 1
    assert "pip install 'agentplex[ui]'" in done.stderr
    assert done.stdout == ""


def test_the_help_teaches_the_command() -> None:
    done = cli("ui", "--help")
    assert done.returncode == 0
    for what in ("--port", "--open", "--json", "token", "pip install 'agentplex[ui]'"):
        assert what in done.stdout, what


def test_the_command_line_loads_the_dashboard_only_for_the_ui_command() -> None:
    # A fresh interpreter: every other command must work without the ui extra installed.
    program = (
        "import sys, agentplex.cli.main, agentplex.cli.parser\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'starlette', 'uvicorn', 'websockets'} or m.startswith('agentplex.ui')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=DEADLINE
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_the_kept_token_is_a_private_file_in_the_state_dir(
    ui: UiProcess, daemon: DaemonProcess
) -> None:
    token_file = daemon.state_dir / "ui" / "token"
    assert token_file.read_text().strip() == ui.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert [p.name for p in token_file.parent.iterdir()] == ["token"]  # no temporary left


def test_a_token_file_others_can_read_is_refused_until_new_token_replaces_it(
    daemon: DaemonProcess,
) -> None:
    with running_ui(daemon) as first:
        pass
    token_file = daemon.state_dir / "ui" / "token"
    token_file.chmod(0o644)
    refused = cli("ui", "--port", "0", env=daemon.env)
    assert refused.returncode == 77  # EX_NOPERM, as for an unsafe runtime dir
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "readable by others" in refused.stderr and "--new-token" in refused.stderr
    assert refused.stdout == ""

    with running_ui(daemon, "--new-token") as second:  # the way out the error names
        assert second.token != first.token  # the token that may have leaked is dropped
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
