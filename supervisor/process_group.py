"""Spawning agents in their own process groups, learning of their exits, ending their trees.

Every child the daemon has goes through :func:`spawn`, and :class:`ChildReaper` reaps
*all* of them (``waitpid(-1)`` on SIGCHLD): the daemon is a child subreaper, so orphaned
tool processes re-parent to it and must be reaped too. Nothing in the daemon may use
``subprocess.run`` or asyncio's subprocesses, which would race the reaper.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from agentplex.supervisor import _linux
from agentplex.supervisor.pidfds import Watched
from agentplex.supervisor.resources import start_time
from agentplex.supervisor.scanner import ProcessScanner

log = structlog.get_logger(__name__)


@dataclass
class ExitStatus:
    """How a process ended: ``code`` if it exited, ``signal`` if a signal killed it."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.waitstatus_to_exitcode(status))

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exit code {self.code}"


@dataclass
class Child:
    """A spawned process group leader and the daemon's ends of its pipes."""

    pid: int
    stdout: int
    stderr: int
    stdin: int | None
    started_at: float | None = None
    """Its start time (``resources.start_time``): with the pid, proof a process is this one."""
    exited: anyio.Event = field(default_factory=anyio.Event)
    status: ExitStatus | None = None

    async def wait(self) -> ExitStatus:
        """Wait until the reaper has collected this process."""
        await self.exited.wait()
        assert self.status is not None
        return self.status


class ChildReaper:
    """Reaps every child of the daemon when SIGCHLD arrives and wakes whoever waits."""

    def __init__(self) -> None:
        self._children: dict[int, Child] = {}

    def watch(self, child: Child) -> None:
        """Track ``child``; call before the next ``await`` after spawning it."""
        self._children[child.pid] = child

    def watched(self) -> set[int]:
        """The pids of the children being watched: every session's running leader."""
        return set(self._children)

    def reap_now(self) -> None:
        """Collect every exited child without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                log.debug("reaped_orphan", pid=pid, status=status)
                continue
            child.status = ExitStatus.from_wait_status(status)
            child.exited.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Reap on every SIGCHLD until cancelled."""
        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            task_status.started()
            self.reap_now()
            async for _ in signals:
                self.reap_now()


@dataclass(frozen=True)
class DeathPact:
    """How an agent is made to die with the daemon: ``PR_SET_PDEATHSIG`` = SIGKILL.

    With ``wrapper`` (util-linux ``setpriv --pdeathsig KILL --``) the child sets it itself
    after exec, so the daemon starts it through ``vfork`` and runs no Python in between;
    a ``preexec_fn`` instead makes CPython ``fork`` the whole daemon (copying its page
    tables) for every agent: 3 to 8 times slower to spawn. The price is a window of a few
    hundred microseconds, before the wrapper runs, in which a daemon crash leaves the agent
    running; recovery then kills it by its session marker.
    """

    wrapper: tuple[str, ...] = ()

    @property
    def how(self) -> str:
        """What sets the signal: ``setpriv`` or ``preexec_fn``."""
        return "setpriv" if self.wrapper else "preexec_fn"

    @classmethod
    def detect(cls) -> DeathPact:
        """Use ``setpriv`` if it is here and can set the signal; else a ``preexec_fn``.

        Call before the reaper runs: the probe waits for its own child.
        """
        setpriv, true = shutil.which("setpriv"), shutil.which("true")
        if setpriv is None or true is None:
            return cls()
        wrapper = (setpriv, "--pdeathsig", "KILL", "--")
        try:
            probe = subprocess.run([*wrapper, true], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return cls()
        return cls(wrapper) if probe.returncode == 0 else cls()


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    with_stdin: bool,
    reaper: ChildReaper,
    pact: DeathPact | None,
    subreaper: bool = False,
) -> Child:
    """Start ``argv`` as the leader of a new session and process group.

    Its stdout and stderr are non-blocking pipes the caller reads; stdin is a pipe when
    ``with_stdin``, else /dev/null (some CLIs wait on an open stdin). With a ``pact`` the
    child gets SIGKILL if the daemon dies, so no agent outlives its supervisor unowned;
    without, a restarted daemon re-adopts it. With ``subreaper`` the child becomes a child
    subreaper before exec (kept across it), so its descendants' orphans stay in its tree
    (``tree`` process tracking); that needs a ``preexec_fn``, hence a slower spawn. A
    missing or non-executable program raises the ``OSError`` an exec would, here rather
    than in the child.
    """
    preexec = None
    if subreaper:
        daemon_pid = os.getpid() if pact is not None else None
        preexec = lambda: _linux.prepare_leader(daemon_pid)  # noqa: E731
    elif pact is not None and pact.wrapper:
        check_executable(argv[0], cwd, env)
        argv = [*pact.wrapper, *argv]
    elif pact is not None:
        daemon_pid = os.getpid()
        preexec = lambda: _linux.die_with_parent(daemon_pid)  # noqa: E731
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    )
    # The reaper owns waiting; detach the Popen object so it never waits or warns.
    process.returncode = 0
    child = Child(
        pid=process.pid,
        started_at=start_time(process.pid),
        stdout=_take_fd(process.stdout),
        stderr=_take_fd(process.stderr),
        stdin=_take_fd(process.stdin) if with_stdin else None,
    )
    reaper.watch(child)
    return child


def check_executable(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Raise what ``execvp`` would if ``program`` cannot be run (a wrapper would only exit)."""
    if not program:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if os.sep in program:
        candidates = [cwd / program]
    else:
        candidates = [cwd / directory / program for directory in os.get_exec_path(dict(env))]
    denied = False
    for path in candidates:
        if path.is_file():
            if os.access(path, os.X_OK):
                return
            denied = True
        elif path.exists():
            denied = True
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), program)


def _take_fd(stream: object) -> int:
    fd = os.dup(stream.fileno())  # type: ignore[attr-defined]
    stream.close()  # type: ignore[attr-defined]
    os.set_blocking(fd, False)
    return fd


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


async def kill_tree(
    session_id: str, pgid: int | None, grace: float, reaper: ChildReaper, scanner: ProcessScanner
) -> bool:
    """SIGTERM every process of a session, SIGKILL what is left after ``grace`` seconds.

    A session's processes are all that descend from it (scanner.py), whatever group,
    session or environment they chose. Repeats until a scan finds nothing (a process may
    fork while being stopped) and returns whether SIGKILL was needed. All collected
    zombies are reaped before return.
    """
    escalated = False
    if pgid is None and scanner.cgroup_empty(session_id):
        return False  # the common end of an agent: nothing left, known without a /proc scan
    if pgid is not None:  # usually the whole session: stop it before looking for strays
        await scanner.members(session_id)  # the lineage, while the leader holds its tree
        escalated = await _stop([pgid], pgid, grace)
        reaper.reap_now()
    for _round in range(5):
        pids = await scanner.members(session_id)
        if not pids:
            break
        escalated |= await _stop(pids, None, grace)
        _kill_cgroup(scanner, session_id)
        reaper.reap_now()
    reaper.reap_now()
    return escalated


async def kill_everything(grace: float, reaper: ChildReaper, scanner: ProcessScanner) -> int:
    """At shutdown, after every session was terminated: end whatever the daemon still has
    below it (children kept past their session, strays no session could claim); returns
    how many there were. Nothing the daemon started outlives it."""
    found = 0
    for _round in range(5):
        pids = await scanner.everything()
        if not pids:
            break
        found = max(found, len(pids))
        await _stop(pids, None, grace)
        if scanner.cgroups is not None:
            for session_id in list(scanner.cgroups_in_use()):
                _kill_cgroup(scanner, session_id)
        reaper.reap_now()
    if found:
        log.warning("leftover_processes_ended", count=found)
    if scanner.cgroups is not None:
        scanner.cgroups.remove()
    return found


def _kill_cgroup(scanner: ProcessScanner, session_id: str) -> None:
    """SIGKILL what is left in the session's cgroup at once (forks under way included)."""
    cgroup = scanner.cgroup_of(session_id)
    if cgroup is not None and cgroup.members():
        cgroup.kill()


async def _stop(pids: list[int], pgid: int | None, grace: float) -> bool:
    watched = _open_pidfds(pids)
    try:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            if pgid is not None:
                signal_group(pgid, sig)
            watched.send(sig)
        if await watched.wait_exited(grace):
            return False
        log.warning("terminate_escalated", pids=watched.pids(), grace=grace)
        if pgid is not None:
            signal_group(pgid, signal.SIGKILL)
        watched.send(signal.SIGKILL)
        await watched.wait_exited(5.0)
        return True
    finally:
        watched.close()


def _open_pidfds(pids: Iterable[int]) -> Watched:
    """Pidfds for ``pids`` while the daemon's allowance lasts; the rest are polled by pid
    (a shutdown of 1,000 sessions must not run the daemon out of descriptors)."""
    return Watched.open(pids)


async def wait_gone(pid: int) -> None:
    """Wait until ``pid`` has ended, through a pidfd: for a process that is not our child
    (one taken back after a restart), whose exit no wait() can see."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
