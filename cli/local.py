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
from agentplex.protocol.errors import AgentplexError, ConfigError, DaemonNotRunning
from agentplex.protocol.paths import RuntimePaths, default_runtime_dir

DEMO_PROMPTS = (
    "Hello! What are you?",
    "What happens to this conversation when the turn ends?",
    "And how would an editor plugin watch you?",
)
DAEMON_START_TIMEOUT = 15.0


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
    try:
        with Client() as client:
            _converse(client, args.turns)
    except AgentplexError as exc:
        print(f"agentplex demo: {exc.message}", file=sys.stderr)
        return exc.exit_code
    finally:
        if daemon is not None:
            _stop_daemon(daemon)
    return 0


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
    daemon = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        try:
            check_daemon_running(paths)
            print(f"daemon started (pid {daemon.pid}, runtime dir {paths.runtime_dir})")
            return daemon
        except DaemonNotRunning:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=DAEMON_START_TIMEOUT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
