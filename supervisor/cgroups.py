"""A cgroup v2 per session, where the daemon may manage one: membership nothing escapes.

A process cannot leave its cgroup by ``setsid``, double forks or a cleared environment, so
the cgroup is the exact set of a session's processes, and ``cgroup.kill`` ends them all at
once, new forks included (as systemd stops a unit). The daemon may manage the cgroup it runs
in when it is root or its systemd unit has ``Delegate=yes``; it then makes
``<own>/agentplex-<pid>/<session-id>`` for each session. No controller is enabled, so the
"no internal processes" rule does not apply and the daemon itself stays where it is.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
"""Where a cgroup v2 hierarchy is mounted: alone, or beside v1 ("hybrid")."""


class CgroupUnavailable(ValueError):
    """Raised when ``process_tracking = "cgroup"`` but no cgroup v2 hierarchy may be managed."""


def own_cgroup() -> Path | None:
    """This process's cgroup v2 directory, if a v2 hierarchy is mounted where we look."""
    path = cgroup_of("self")
    return path if path is not None and (path / "cgroup.procs").exists() else None


def cgroup_of(pid: int | str) -> Path | None:
    """The cgroup v2 directory ``pid`` is in (its ``0::`` line under a v2 mount), or None."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None
    for mount in MOUNTS:
        if (mount / "cgroup.procs").exists() and (mount / "cgroup.controllers").exists():
            return mount / relative.lstrip("/")
    return None


# A cgroup file answers ENOENT once its directory is gone, ENODEV while it is being removed.
_GONE = frozenset({errno.ENOENT, errno.ENODEV})


@dataclass(frozen=True)
class SessionCgroup:
    """One session's cgroup."""

    path: Path

    def add(self, pid: int) -> None:
        """Move ``pid`` (and the threads of its process) into this cgroup."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def members(self) -> list[int]:
        """Every process in the cgroup now (empty once removed)."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError as exc:
            # ENODEV: the cgroup was removed between open and read (seen under load at shutdown)
            if exc.errno in _GONE:
                return []
            raise
        return [int(pid) for pid in text.split()]

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every member (one at a time: a process forking meanwhile may be
        missed, which the caller's next round catches)."""
        for pid in self.members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue

    def kill(self) -> None:
        """SIGKILL every member at once, forks under way included; by hand on old kernels."""
        try:
            (self.path / "cgroup.kill").write_text("1\n")
        except OSError as exc:  # ENOENT before Linux 5.14; ENOENT/ENODEV once the cgroup is gone
            if exc.errno not in _GONE:
                raise
            self.signal(signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the cgroup if it is empty; True if it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.warning("cgroup_not_removed", path=str(self.path), error=exc.strerror)
            return False
        return True


class CgroupTree:
    """The daemon's own subtree of cgroups, one child per session."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def detect(cls) -> CgroupTree | None:
        """The subtree this process may manage, or None. Makes (and removes) a probe cgroup:
        permission to make one is the only reliable test of delegation."""
        own = own_cgroup()
        if own is None:
            return None
        probe = own / f"agentplex-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            return None
        sweep_stale(own)
        return cls(own / f"agentplex-{os.getpid()}")

    def session(self, session_id: str) -> SessionCgroup:
        """The session's cgroup, made if need be."""
        self.root.mkdir(exist_ok=True)
        path = self.root / session_id
        path.mkdir(exist_ok=True)
        return SessionCgroup(path)

    def existing(self, session_id: str) -> SessionCgroup | None:
        """The session's cgroup if one was made."""
        path = self.root / session_id
        return SessionCgroup(path) if path.is_dir() else None

    def remove(self) -> None:
        """Remove every empty session cgroup and, if then empty, the subtree (at shutdown,
        or a dead daemon's at start-up)."""
        if not self.root.is_dir():
            return
        for child in self.root.iterdir():
            if child.is_dir():
                SessionCgroup(child).remove()
        SessionCgroup(self.root).remove()


def sweep_stale(own: Path) -> None:
    """Remove the empty subtrees that daemons which died without their shutdown (SIGKILL, a
    crash) left in ``own``: each is named for its daemon's pid, and that pid is gone (or is
    another process, not a daemon in this cgroup). A subtree with processes still in it is
    left alone: its agents outlived their daemon on purpose, and their cgroup is their record."""
    for subtree in own.glob("agentplex-[0-9]*"):
        pid = int(subtree.name.removeprefix("agentplex-"))
        if pid != os.getpid() and not _is_daemon_here(pid, own):
            CgroupTree(subtree).remove()


def _is_daemon_here(pid: int, own: Path) -> bool:
    """Whether ``pid`` runs in the cgroup ``own`` (a live daemon's subtree is its own)."""
    return cgroup_of(pid) == own
