"""The commands that run things on this machine: ``daemon`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentplex.cli.render import ChunkPrinter
from agentplex.client.async_client import check_daemon_running
from agentplex.client.sync_client import Client
from agentplex.protocol import ChunkKind
from agentplex.protocol.errors import (
    AgentplexError,
    ConfigError,
    DaemonNotRunning,
    InvalidArgument,
)
from agentplex.protocol.paths import RuntimePaths, default_runtime_dir

DEMO_PROMPTS = (
    "Hello! What are you?",
    "What happens to this conversation when the turn ends?",
    "And how would an editor plugin watch you?",
)
DAEMON_START_TIMEOUT = 15.0
INTERRUPTED_STOP_WAIT = 0.5
"""After a Ctrl-C, how long ``demo`` waits for the daemon it started to stop: the command
must end within a second."""


def run_daemon(args: argparse.Namespace) -> int:
    """``agentplex daemon``: run the daemon in the foreground.

    Flags over AGENTPLEX_* variables over the config file over the defaults.
    """
    from agentplex.supervisor import config_file
    from agentplex.supervisor.daemon import run

    flags = {
        "runtime_dir": str(Path(args.runtime_dir).absolute()) if args.runtime_dir else None,
        "state_dir": str(Path(args.state_dir).absolute()) if args.state_dir else None,
        "terminate_grace": args.grace,
        "max_sessions": args.max_sessions,
        "turn_timeout": args.turn_timeout,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "metrics_port": args.metrics_port,
    }
    try:
        resolved = config_file.load(getattr(args, "config", None), flags=flags)
    except ConfigError as exc:
        print(f"agentplex daemon: {exc.message}", file=sys.stderr)
        return exc.exit_code
    config_file.export_to_environment(resolved)
    return run(resolved.config)


def run_demo(args: argparse.Namespace) -> int:
    """``agentplex demo``: a daemon (started here if none runs) and a demo conversation."""
    paths = RuntimePaths(default_runtime_dir())
    daemon = None
    try:
        check_daemon_running(paths)
    except DaemonNotRunning:
        daemon = _spawn_daemon(paths, args.state_dir)
    interrupted = False
    try:
        with Client() as client:
            if daemon is None and args.state_dir:
                _refuse_other_state_dir(client, Path(args.state_dir))
            _converse(client, args.turns)
    except AgentplexError as exc:
        print(f"agentplex demo: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if daemon is not None:
            _stop_daemon(daemon, interrupted=interrupted)
    return 0


def _refuse_other_state_dir(client: Client, state_dir: Path) -> None:
    """``--state-dir`` places a daemon the demo starts; one already running keeps its own."""
    info = client.ping()
    if Path(info.state_dir).resolve() == state_dir.resolve():
        return
    raise InvalidArgument(
        f"--state-dir {state_dir} is for a daemon the demo starts, but daemon {info.pid} "
        f"already runs in {info.runtime_dir} with state dir {info.state_dir}: stop it, "
        "or give the demo a runtime dir of its own (agentplex --runtime-dir DIR demo ...)"
    )


def _converse(client: Client, turns: int) -> None:
    prompts = [DEMO_PROMPTS[i % len(DEMO_PROMPTS)] for i in range(max(turns, 1))]
    info = client.start("demo", prompts[0], tag="demo", cwd=os.getcwd())
    print(f"session {info.id} (backend demo) started; transcript: {info.transcript}\n")
    printer = ChunkPrinter()
    seq = 1
    for number, prompt in enumerate(prompts, start=1):
        if number > 1:
            client.send(prompt, info.id)
        print(f"you> {prompt}")
        for chunk in client.follow(info.id, seq):
            seq = chunk.seq + 1
            printer.print(chunk)
            if chunk.kind is ChunkKind.RESULT:
                break
        printer.close()
        print()
    client.terminate(info.id)
    print(f"session ended; its transcript: {info.transcript}")


def _spawn_daemon(paths: RuntimePaths, state_dir: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "agentplex.cli.main", "daemon", "--log-level", "warning"]
    if state_dir:
        argv += ["--state-dir", state_dir]
    env = dict(os.environ, AGENTPLEX_RUNTIME_DIR=str(paths.runtime_dir))
    # Its own session: a Ctrl-C at the terminal reaches only this command, which then stops
    # the daemon with one SIGTERM (a clean stop) rather than two signals (a cut-short one).
    daemon = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        _wait_daemon_ready(paths, daemon)
    except BaseException:  # it died, or Ctrl-C meanwhile: leave no daemon behind
        _stop_daemon(daemon, interrupted=True)
        raise
    print(f"daemon started (pid {daemon.pid}, runtime dir {paths.runtime_dir})")
    return daemon


def _wait_daemon_ready(paths: RuntimePaths, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        try:
            check_daemon_running(paths)
            return
        except DaemonNotRunning:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _stop_daemon(daemon: subprocess.Popen[bytes], *, interrupted: bool) -> None:
    """SIGTERM the daemon and wait for its clean stop (SIGKILL if it takes too long).
    After a Ctrl-C the wait is short, and a daemon still stopping then finishes alone."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=INTERRUPTED_STOP_WAIT if interrupted else DAEMON_START_TIMEOUT)
    except subprocess.TimeoutExpired:
        if not interrupted:
            daemon.kill()
            daemon.wait()
