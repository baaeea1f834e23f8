"""Running the dashboard: bind 127.0.0.1, serve with uvicorn, announce the URL, stop on a
signal.

The socket is bound here, not by uvicorn, so that ``--port 0`` works and the real port is
known before the URL (whose Host and Origin the guard checks) is printed. Signals are
handled here too: uvicorn's own handling re-raises the signal once it has stopped, which
would end the process by that signal instead of exit 0. The first SIGINT or SIGTERM closes
every page's socket and stops the server; a second one stops it now.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import anyio
import msgspec
import uvicorn
from anyio.abc import TaskStatus

from agentplex.client.runtime_dir import check_daemon_running
from agentplex.protocol.errors import DaemonNotRunning, InvalidArgument, PortUnavailable
from agentplex.protocol.paths import RuntimePaths
from agentplex.ui.app import create_app
from agentplex.ui.link import DaemonLink
from agentplex.ui.security import TOKEN_PARAM, Access
from agentplex.ui.token_file import load_token

HOST: Final = "127.0.0.1"
GRACEFUL_SHUTDOWN: Final = 5
"""Seconds uvicorn waits for open connections after the pages were told to go."""


class Announcement(msgspec.Struct, frozen=True):
    """The ``--json`` line: where the dashboard listens."""

    url: str
    port: int
    pid: int


class DashboardServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling, announcing itself once it serves."""

    def __init__(self, config: uvicorn.Config, announce: anyio.Event) -> None:
        super().__init__(config)
        self._announce = announce

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # :func:`_stop_on_signals` handles them

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._announce.set()


def run(
    *,
    port: int,
    runtime_dir: Path,
    state_dir: Path,
    rotate_token: bool = False,
    open_browser: bool = False,
    as_json: bool = False,
) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; returns the exit code (0). The token is
    the one kept in ``state_dir`` (a new one with ``rotate_token``)."""
    # A broken runtime dir: say so now. No daemon: the page serves and shows it down, and
    # the link keeps looking for one.
    with contextlib.suppress(DaemonNotRunning):
        check_daemon_running(RuntimePaths(runtime_dir))
    token = load_token(state_dir, rotate=rotate_token)
    sock = bind(port)
    access = Access(token, sock.getsockname()[1])
    link = DaemonLink(runtime_dir)
    announced = anyio.Event()
    config = uvicorn.Config(
        create_app(link, access),
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = DashboardServer(config, announced)
    url = f"http://{HOST}:{access.port}/?{TOKEN_PARAM}={access.token}"
    line = msgspec.json.encode(Announcement(url, access.port, os.getpid())).decode()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(_stop_on_signals, server, link)
            tg.start_soon(_announce, announced, line if as_json else url, url, open_browser)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(main, backend="asyncio")  # uvicorn runs on asyncio
    return 0


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free port), or PortUnavailable."""
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"--port expects 0 to 65535 (0: any free port), got {port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
    try:
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise PortUnavailable(
            f"cannot listen on {HOST}:{port} ({why}): choose another with --port, "
            "or --port 0 for any free port"
        ) from None
    return sock


async def _announce(announced: anyio.Event, line: str, url: str, open_browser: bool) -> None:
    await announced.wait()
    print(line, flush=True)
    if open_browser:  # a console browser may take a while to start: not on the loop
        await anyio.to_thread.run_sync(webbrowser.open, url)


async def _stop_on_signals(
    server: uvicorn.Server,
    link: DaemonLink,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if server.should_exit:
                server.force_exit = True  # a second signal: stop now
            else:
                link.close_all()
                server.should_exit = True


__all__ = ["run"]
