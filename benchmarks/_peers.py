"""The peers: circusd and supervisord, each a subprocess with a generated config in its own dir.

Both are driven the way their own tools drive them (circus: JSON over its ZeroMQ control
endpoint; supervisord: XML-RPC over its unix socket) without importing either package
here, so the harness never picks up the wrong top-level ``supervisor`` module. Nothing
listens on the network: circus's endpoints are ipc://, its multicast discovery is off,
supervisord has only a unix socket.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from _harness import HERE, READY_TIMEOUT, stop_process_tree, wait_until

BIN = Path(sys.executable).parent


def executable(name: str) -> str | None:
    """``circusd`` / ``supervisord`` next to this Python, else on PATH; None if absent."""
    local = BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def available(name: str) -> bool:
    return executable(name) is not None


# --------------------------------------------------------------------------- circus


@dataclass(frozen=True)
class Watcher:
    """One circus watcher: ``numprocesses`` copies of ``cmd args``.

    ``stream`` is ``("pub", endpoint)`` (our PubStream), ``("file", path)`` (circus's
    FileStream) or None (output not captured).
    """

    name: str
    cmd: str
    args: list[str]
    numprocesses: int
    stream: tuple[str, str] | None = None
    autostart: bool = True


class Circus:
    """circusd with ipc:// endpoints under ``base``; ``call`` sends one command."""

    def __init__(self, base: Path, watchers: list[Watcher]) -> None:
        self.base = base
        self.endpoint = f"ipc://{base / 'circus-ctl.sock'}"
        self.pubsub_endpoint = f"ipc://{base / 'circus-pub.sock'}"
        self.watchers = watchers
        self.process: subprocess.Popen[bytes] | None = None
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _ini(self) -> str:
        lines = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = {self.pubsub_endpoint}",
            "multicast_endpoint =",
            "statsd = False",
            "",
        ]
        for w in self.watchers:
            lines += [
                f"[watcher:{w.name}]",
                f"cmd = {w.cmd}",
                f"args = {' '.join(w.args)}",
                f"numprocesses = {w.numprocesses}",
                f"working_dir = {self.base}",
                f"autostart = {w.autostart}",
                "respawn = False",
                "copy_env = True",
            ]
            if w.stream is not None:
                kind, target = w.stream
                if kind == "pub":
                    lines += [
                        "stdout_stream.class = _circus_stream.PubStream",
                        f"stdout_stream.endpoint = {target}",
                    ]
                else:
                    lines += [
                        "stdout_stream.class = FileStream",
                        f"stdout_stream.filename = {target}",
                    ]
            lines.append("")
        return "\n".join(lines)

    def __enter__(self) -> Circus:
        ini = self.base / "circus.ini"
        ini.write_text(self._ini())
        env = dict(os.environ, PYTHONPATH=str(HERE))
        with open(self.base / "circusd.log", "wb") as log_file:
            self.process = subprocess.Popen(
                [str(executable("circusd")), "--log-level", "warning", str(ini)],
                cwd=self.base,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._socket.connect(self.endpoint)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"circusd exited: {self.log_tail()}")
            try:
                self.call("list", timeout=0.5)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"circusd did not answer: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.base / "circusd.log").read_text(errors="replace")[-2000:]

    def call(self, command: str, timeout: float = 60.0, **properties: Any) -> dict[str, Any]:
        """One circus command; raises if circus says it failed."""
        call_id = uuid.uuid4().hex
        message = {"id": call_id, "command": command, "properties": properties}
        self._socket.send(json.dumps(message).encode())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self._socket.poll(int(left * 1000) + 1):
                break
            reply: dict[str, Any] = json.loads(self._socket.recv())
            if reply.get("id") != call_id:
                continue
            if reply.get("status") != "ok":
                raise RuntimeError(f"circus {command}: {reply}")
            return reply
        raise TimeoutError(f"circus did not answer {command!r} within {timeout} s")

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
        self._ctx.term()
        if self.process is not None:
            stop_process_tree(self.process, timeout=30.0)


# --------------------------------------------------------------------------- supervisord


@dataclass(frozen=True)
class Program:
    """One supervisord program: ``numprocs`` copies of ``command``, stdout to a file each."""

    name: str
    command: str
    numprocs: int
    autostart: bool = True

    def log_path(self, base: Path, index: int) -> Path:
        return base / f"{self.name}_{index:03d}.log"


class Supervisord:
    """supervisord in the foreground with a unix socket under ``base``; ``rpc`` is its
    XML-RPC proxy. With ``deaths_file`` an event listener notes each reported exit."""

    def __init__(self, base: Path, programs: list[Program], deaths_file: Path | None = None):
        self.base = base
        self.socket_path = base / "supervisor.sock"
        self.programs = programs
        self.deaths_file = deaths_file
        self.process: subprocess.Popen[bytes] | None = None
        self.rpc: Any = xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(self.socket_path))
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _conf(self) -> str:
        b = self.base
        lines = [
            "[unix_http_server]",
            f"file = {self.socket_path}",
            "",
            "[supervisord]",
            f"logfile = {b / 'supervisord.log'}",
            f"pidfile = {b / 'supervisord.pid'}",
            f"childlogdir = {b}",
            f"directory = {b}",
            "nodaemon = true",
            "loglevel = warn",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for prog in self.programs:
            lines += [
                f"[program:{prog.name}]",
                f"command = {prog.command}",
                f"numprocs = {prog.numprocs}",
                "process_name = %(program_name)s_%(process_num)03d",
                f"autostart = {str(prog.autostart).lower()}",
                "autorestart = false",
                "startsecs = 0",
                "stopwaitsecs = 30",
                f"stdout_logfile = {b}/%(program_name)s_%(process_num)03d.log",
                "stdout_logfile_maxbytes = 0",
                "stderr_logfile = NONE",
                "",
            ]
        if self.deaths_file is not None:
            listener = HERE / "_supervisor_listener.py"
            lines += [
                "[eventlistener:deaths]",
                f"command = {sys.executable} {listener} {self.deaths_file}",
                "events = PROCESS_STATE_EXITED",
                "buffer_size = 10000",
                "stdout_logfile = NONE",
                "stderr_logfile = NONE",
                "",
            ]
        return "\n".join(lines)

    def __enter__(self) -> Supervisord:
        conf = self.base / "supervisord.conf"
        conf.write_text(self._conf())
        with open(self.base / "supervisord.out", "wb") as out:
            self.process = subprocess.Popen(
                [str(executable("supervisord")), "-n", "-c", str(conf)],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._ready, READY_TIMEOUT, 0.01, "supervisord")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"supervisord exited: {self.log_tail()}")
        if not self.socket_path.exists():
            return False
        try:
            return bool(self.rpc.supervisor.getState()["statename"] == "RUNNING")
        except OSError:
            return False

    def log_tail(self) -> str:
        out = (self.base / "supervisord.out").read_text(errors="replace")
        log = self.base / "supervisord.log"
        return (out + (log.read_text(errors="replace") if log.exists() else ""))[-2000:]

    def pids(self, group: str) -> list[int]:
        return [
            info["pid"]
            for info in self.rpc.supervisor.getAllProcessInfo()
            if info["group"] == group and info["pid"]
        ]

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process_tree(self.process, timeout=60.0)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a unix socket (supervisorctl's own transport does the same)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)
