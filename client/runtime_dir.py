"""Before a client sends anything: is a daemon of this user's really serving this runtime dir?

A client sends secrets (``start --env API_KEY=...``, every message) to whatever listens on
the runtime dir's socket, so it first proves the listener is this user's: the runtime dir
and its sockets must be owned by this uid and writable by nobody else (a dir at a guessable
path such as ``/tmp/agentplex-<uid>`` may have been created by someone else first). Then it
tells a live daemon from a dead one by the lock file's ``flock``, which the kernel releases
when the daemon dies, never by the pid written in it, which the system may have reused.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from agentplex.protocol.errors import DaemonNotRunning, UnsafeDirectory
from agentplex.protocol.paths import RuntimePaths, ipc_endpoint

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def check_daemon_running(paths: RuntimePaths) -> None:
    """Raise RuntimeDirTooLong if its sockets' paths are too long, UnsafeDirectory if the
    runtime dir or a socket in it is not this user's alone; DaemonNotRunning, saying how
    to start one, if no daemon serves ``paths``."""
    ipc_endpoint(paths.control)  # a dir too long for a socket: say so, not "no daemon"
    hint = f"start one with: agentplex daemon --runtime-dir {paths.runtime_dir}"
    try:
        _check_private(paths.runtime_dir, os.stat(paths.runtime_dir), "runtime dir")
        sockets = [path for path in (paths.control, paths.events) if _socket(path)]
    except FileNotFoundError:
        sockets = []
    if not os.path.lexists(paths.control):
        raise DaemonNotRunning(f"no agentplex daemon is running at {paths.runtime_dir}; {hint}")
    if paths.control not in sockets or not lock_held(paths.lock):
        raise DaemonNotRunning(
            f"no agentplex daemon is running at {paths.runtime_dir}: the one that was there "
            f"is gone (stale socket); {hint}"
        )


def _socket(path: Path) -> bool:
    """Whether ``path`` is a socket (one of this user's alone, or UnsafeDirectory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        return False  # nothing can listen there: no daemon
    _check_private(path, st, "socket")
    return True


def _check_private(path: Path, st: os.stat_result, what: str) -> None:
    uid = os.getuid()
    if st.st_uid != uid:
        raise UnsafeDirectory(
            f"the {what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
            "refusing to send anything to it; set XDG_RUNTIME_DIR or AGENTPLEX_RUNTIME_DIR "
            "to a directory of your own"
        )
    if st.st_mode & _WRITABLE_BY_OTHERS:
        raise UnsafeDirectory(
            f"the {what} {path} is writable by others (mode {stat.S_IMODE(st.st_mode):o}): "
            "refusing to send anything to it; set XDG_RUNTIME_DIR or AGENTPLEX_RUNTIME_DIR "
            "to a directory of your own"
        )


def lock_held(lock: Path) -> bool:
    """Whether a process holds the ``flock`` on ``lock`` (a daemon holds it for its life).

    Asks by trying a shared lock without waiting, and drops it at once (the daemon retries
    its own exclusive lock for a moment, so this instant never keeps one from starting).
    """
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
