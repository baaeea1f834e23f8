"""The commands that run things on this machine: ``daemon`` and ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agentplex.cli.render import ChunkPrinter
from agentplex.client.async_client import check_daemon_running
from agentplex.client.runtime_dir import lock_held
from agentplex.client.sync_client import Client
from agentplex.protocol import ChunkKind
from agentplex.protocol.errors import (
    EXIT_TEMPFAIL,
    AgentplexError,
    DaemonNotRunning,
    InvalidArgument,
)
from agentplex.protocol.paths import RuntimePaths, default_runtime_dir

if TYPE_CHECKING:
    from agentplex.supervisor.config import Config

DEMO_PROMPTS = (
    "Hello! What are you?",
    "What happens to this conversation when the turn ends?",
    "And how would an editor plugin watch you?",
)
DAEMON_START_TIMEOUT = 15.0
DAEMON_LOG = "daemon.log"
"""In the state dir: where ``daemon --detach`` appends the daemon's output."""
STOP_MARGIN = 10.0
"""``daemon --stop`` waits the grace period plus this for the daemon to be gone: its
sessions get their grace, then it writes its table and closes its sockets."""
DAEMON_OPTIONS = (
    ("state_dir", "state_dir", "--state-dir"),
    ("grace", "terminate_grace", "--grace"),
    ("max_sessions", "max_sessions", "--max-sessions"),
    ("turn_timeout", "turn_timeout", "--turn-timeout"),
    ("log_level", "log_level", "--log-level"),
    ("log_format", "log_format", "--log-format"),
    ("metrics_port", "metrics_port", "--metrics-port"),
)
"""``daemon``'s own options: (argparse attribute, config field, flag). They override the
config file, and ``--detach`` passes them on to the daemon it starts."""
INTERRUPTED_STOP_WAIT = 0.5
"""After a Ctrl-C, how long ``demo`` waits for the daemon it started to stop: the command
must end within a second."""


def run_daemon(args: argparse.Namespace) -> int:
    """``agentplex daemon``: run the daemon in the foreground.

    Flags over AGENTPLEX_* variables over the config file over the defaults.
    """
    from agentplex.supervisor import config_file
    from agentplex.supervisor.daemon import run

    flags = {field: value for field, _flag, value in _daemon_options(args)}
    try:
        resolved = config_file.load(getattr(args, "config", None), flags=flags)
        if args.detach:
            return _detach(args, resolved.config)
        if args.stop:
            return _stop(resolved.config)
    except AgentplexError as exc:  # ConfigError, and what --detach and --stop meet
        print(f"agentplex daemon: {exc.message}", file=sys.stderr)
        return exc.exit_code
    config_file.export_to_environment(resolved)
    return run(resolved.config)


def _detach(args: argparse.Namespace, config: Config) -> int:
    """``daemon --detach``: the daemon in its own session, logging to STATE/daemon.log;
    returns once it serves, or with its error and exit code if it could not start."""
    from agentplex.supervisor.dirs import prepare_private_dir

    log = prepare_private_dir(Path(config.state_dir)) / DAEMON_LOG
    with open(log, "ab") as out:
        start = out.tell()
        # Its own session: the terminal's Ctrl-C and hangup no longer reach it.
        daemon = subprocess.Popen(
            _detached_argv(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        _wait_daemon_ready(config.paths, daemon)
    except DaemonNotRunning:
        if (code := daemon.poll()) is not None:
            print(_last_error(log, start, code), file=sys.stderr)
            # Killed by a signal: the shell's 128 + signum; a clean exit is still a failure.
            return 128 - code if code < 0 else code or 1
        _stop_daemon(daemon, interrupted=False)
        print(
            f"agentplex daemon: the daemon did not serve within {DAEMON_START_TIMEOUT:g} s "
            f"and was stopped; see {log}",
            file=sys.stderr,
        )
        return EXIT_TEMPFAIL
    except BaseException:  # Ctrl-C meanwhile, or a runtime dir refused: leave no daemon
        _stop_daemon(daemon, interrupted=True)
        raise
    return 0


def _detached_argv(args: argparse.Namespace) -> list[str]:
    """The command line given, less ``--detach`` (dirs absolute: the same daemon)."""
    argv = [sys.executable, "-m", "agentplex.cli.main", "daemon"]
    if getattr(args, "config", None):
        argv += ["--config", str(Path(args.config).absolute())]
    for _field, flag, value in _daemon_options(args):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _daemon_options(args: argparse.Namespace) -> list[tuple[str, str, object]]:
    """(config field, flag, value) of every daemon option, the runtime dir's included;
    dirs made absolute (a detached daemon runs elsewhere)."""
    options = [("runtime_dir", "runtime_dir", "--runtime-dir"), *DAEMON_OPTIONS]
    found: list[tuple[str, str, object]] = []
    for attribute, field, flag in options:
        value = getattr(args, attribute)
        if attribute.endswith("_dir"):
            value = str(Path(value).absolute()) if value else None
        found.append((field, flag, value))
    return found


def _last_error(log: Path, start: int, code: int) -> str:
    """The daemon's own last error line of this start (its log from ``start``), else a
    line saying that it exited and where its log is."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("agentplex daemon: ")]
    if errors:
        return errors[-1]
    return f"agentplex daemon: the daemon exited with code {code} while starting; see {log}"


def _stop(config: Config) -> int:
    """``daemon --stop``: SIGTERM the daemon serving the runtime dir, wait until its lock
    is released (the kernel releases it when the daemon is gone)."""
    paths = config.paths
    with Client(paths.runtime_dir) as client:  # DaemonNotRunning (69) if none serves there
        pid = client.ping().pid
    with contextlib.suppress(ProcessLookupError):  # stopped meanwhile: its lock is free
        os.kill(pid, signal.SIGTERM)
    wait = config.terminate_grace + STOP_MARGIN
    deadline = time.monotonic() + wait
    while lock_held(paths.lock):
        if time.monotonic() > deadline:
            print(
                f"agentplex daemon: daemon {pid} is still stopping after {wait:g} s",
                file=sys.stderr,
            )
            return EXIT_TEMPFAIL
        time.sleep(0.05)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``agentplex demo``: a daemon (started here if none runs) and a demo conversation."""
    paths = RuntimePaths(default_runtime_dir())
    daemon = None
    try:
        check_daemon_running(paths)
    except DaemonNotRunning:
        try:
            daemon = _spawn_daemon(paths, args.state_dir)
        except AgentplexError as exc:  # its own error is on stderr already, above this line
            print(f"agentplex demo: {exc.message}", file=sys.stderr)
            return exc.exit_code
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
    """Return once ``daemon`` serves ``paths``; DaemonNotRunning if it exits first or the
    start times out. Another daemon serving there is not this one (which will exit)."""
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        try:
            check_daemon_running(paths)
            if _serving_pid(paths) == daemon.pid:
                return
        except DaemonNotRunning:
            pass
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise DaemonNotRunning(f"the daemon started at {paths.runtime_dir} did not serve")
        time.sleep(0.05)


def _serving_pid(paths: RuntimePaths) -> int:
    with Client(paths.runtime_dir) as client:
        return client.ping().pid


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
