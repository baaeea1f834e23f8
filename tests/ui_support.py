"""The real ``agentplex ui`` process, for tests: :func:`running_ui`.

    with running_ui(daemon) as ui:   # or: ui = start_ui(daemon); ...; ui.stop()
        page.goto(ui.url)            # the token URL: sets the cookie, redirects to /
        ...                          # ui.base, ui.port, ui.token

It starts ``agentplex ui --port P --json`` aimed at a daemon's runtime and state dirs (the
token it prints is the one kept in the state dir: a restart on it prints the same),
waits for the JSON line the command prints once it listens, and stops it with SIGTERM,
asserting that it exited 0.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from support import DaemonProcess

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class UiProcess:
    """A running ``agentplex ui``: where it listens, and its token."""

    process: subprocess.Popen[str]
    url: str
    """The URL it printed, with ``?token=``: opening it sets the cookie."""
    port: int
    token: str
    stderr_lines: list[str] = field(default_factory=list)
    _collector: threading.Thread | None = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (no token, no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM it, wait, and assert that it exited 0 (a clean stop); returns the code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_TIMEOUT)
        _close_pipes(self.process, self._collector)
        assert code == 0, f"agentplex ui exited {code}: {''.join(self.stderr_lines[-20:])}"
        return code


def start_ui(daemon: DaemonProcess | Mapping[str, str], *args: str, port: int = 0) -> UiProcess:
    """Start ``agentplex ui`` for ``daemon`` (or an environment naming its dirs) on ``port``
    (0: a free one; a port it had before: the page's origin stays the same), with ``args``
    (such as ``--new-token``), and return once it listens. Stop it with
    :meth:`UiProcess.stop`."""
    env = daemon.env if isinstance(daemon, DaemonProcess) else dict(daemon)
    command = ["ui", "--port", str(port), "--json", *args]
    process = subprocess.Popen(
        [sys.executable, "-m", "agentplex.cli.main", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines: list[str] = []
    collector = threading.Thread(target=_collect, args=(process, stderr_lines), daemon=True)
    collector.start()
    try:
        url, bound = _announced(process, stderr_lines)
    except BaseException:
        process.kill()
        process.wait()
        _close_pipes(process, collector)
        raise
    token = url.split("token=", 1)[1]
    return UiProcess(process, url, bound, token, stderr_lines, collector)


@contextmanager
def running_ui(
    daemon: DaemonProcess | Mapping[str, str], *args: str, port: int = 0
) -> Iterator[UiProcess]:
    """:func:`start_ui`, stopped (and its exit 0 asserted) on the way out."""
    ui = start_ui(daemon, *args, port=port)
    try:
        yield ui
    finally:
        ui.stop()


def _announced(process: subprocess.Popen[str], stderr_lines: list[str]) -> tuple[str, int]:
    """The URL and port ``agentplex ui --json`` prints once it listens (or fail saying why)."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        raise AssertionError(f"agentplex ui printed nothing in {START_TIMEOUT} s") from None
    if not line:
        code = process.wait()
        raise AssertionError(f"agentplex ui exited {code} first: {''.join(stderr_lines)}")
    announced = json.loads(line)
    return str(announced["url"]), int(announced["port"])


def _collect(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stderr is not None
    with process.stderr:
        for line in process.stderr:
            into.append(line)


def _close_pipes(process: subprocess.Popen[str], collector: threading.Thread | None) -> None:
    """Once the process is gone: its stderr read to the end, its stdout closed."""
    if collector is not None:
        collector.join(STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()
