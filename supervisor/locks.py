"""One daemon per runtime directory and one per state directory, held for the daemon's life.

Each lock is an ``flock`` on a ``daemon.lock`` file holding the daemon's pid: the kernel
releases it when the daemon dies however it dies, so a lock is never stale, and a client
tells a live daemon from a dead one by whether the lock is held (not by the pid, which the
system may have given to another process since).

A lock file is only as good as its directory: remove the runtime dir and a second daemon
would create a new one, take a new lock and bind new sockets on the same path. So the
runtime lock is also an abstract unix socket named for the runtime dir's path: it lives
in no directory, nobody can remove it, and the kernel frees it when its daemon dies. (A
lock in the state dir keyed by the runtime path would miss two daemons with different
state dirs.)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import struct
import time
from pathlib import Path
from types import TracebackType

from agentplex.protocol.errors import DaemonAlreadyRunning
from agentplex.protocol.paths import LOCK_FILE
from agentplex.supervisor.dirs import prepare_private_dir

CONTENDED_FOR = 0.5
"""Seconds to retry a lock that is held: a client checking whether a daemon runs holds a
shared lock for an instant, which must not make a starting daemon give up."""


class _FileLock:
    """An exclusive ``flock`` on a lock file that holds the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock and write our pid; the holder's pid (None if unknown) if held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + CONTENDED_FOR
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                return int(holder) if holder.isdigit() else 0
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _holder(pid: int) -> str:
    return f"pid {pid}" if pid else "pid unknown"


class StateLock:
    """The state dir (session table, transcripts) belongs to one daemon: a second one
    would take back the first one's live agents as its own."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock: _FileLock | None = None

    def __enter__(self) -> StateLock:
        real = prepare_private_dir(self.state_dir)
        lock = _FileLock(real / LOCK_FILE)
        holder = lock.acquire()
        if holder is not None:
            raise DaemonAlreadyRunning(
                f"a daemon ({_holder(holder)}) is already using the state dir "
                f"{self.state_dir}; give this one another --state-dir"
            )
        self._lock = lock
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lock is not None:
            self._lock.release()


class RuntimeLock:
    """The runtime dir (the sockets) belongs to one daemon, even once it was removed."""

    def __init__(self, runtime_dir: Path, lock_path: Path) -> None:
        self.runtime_dir = runtime_dir
        self._lock = _FileLock(lock_path)
        self._claim: socket.socket | None = None
        self._locked = False

    def __enter__(self) -> RuntimeLock:
        real = prepare_private_dir(self.runtime_dir)
        holder = self._lock.acquire()
        if holder is not None:
            raise DaemonAlreadyRunning(
                f"a daemon is already running on {self.runtime_dir} ({_holder(holder)})"
            )
        self._locked = True
        try:
            self._claim = _claim(real)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = None
        if self._locked:
            self._lock.release()
            self._locked = False


def claim_name(runtime_dir: Path) -> bytes:
    """The abstract socket name that stands for ``runtime_dir`` (its real path)."""
    digest = hashlib.sha256(os.fsencode(runtime_dir)).hexdigest()[:40]
    return f"\0agentplex-runtime-{digest}".encode()


def _claim(runtime_dir: Path) -> socket.socket:
    """Bind the abstract socket for ``runtime_dir``; DaemonAlreadyRunning if another
    process holds it."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(claim_name(runtime_dir))
        claim.listen(1)  # never accepted: listening lets a rival learn who holds it
    except OSError as exc:
        claim.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        pid, uid = _claimant(runtime_dir)
        who = f"pid {pid}, uid {uid}" if pid else "pid unknown"
        raise DaemonAlreadyRunning(
            f"a daemon ({who}) already serves {runtime_dir}, though its runtime dir was "
            "removed and made again; stop that daemon first"
        ) from None
    return claim


def _claimant(runtime_dir: Path) -> tuple[int, int]:
    """The pid and uid holding the claim (0, 0 if it cannot be asked)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(claim_name(runtime_dir))
        creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return 0, 0
    finally:
        probe.close()
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid
