"""Gemini CLI's project-registry lock, cleared before a turn when no Gemini process holds it.

Every Gemini CLI process locks ``~/.gemini/projects.json`` several times at start-up, from
tasks that run side by side (the start-up cleanups, the session lookup of ``--resume``, the
config). The lock is a directory, ``projects.json.lock``, made by the proper-lockfile package.
A process that exits while one of those tasks has made the directory but not yet recorded it as
held (a turn answered fast, a signal during start-up) leaves the directory behind: its exit
handler removes only recorded locks. Every later Gemini process in that home then waits until
the lock counts as stale (10 s old), its retries backing off 0.1, 0.2, 0.4 ... 6.4, 12.8 s: a
turn stalls 12.7, 25.5 or 51 s before its first request. Measured against the fake: 2 of 10
one-turn runs left the directory; the next turn took 13.9 s (53 s under strace).

The lock is only ever held for milliseconds, by a live Gemini process. So a lock directory with
no Gemini process of that home alive is an orphan, and removing it is safe.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

REGISTRY_LOCK = Path(".gemini") / "projects.json.lock"
"""Below Gemini's home: the lock directory proper-lockfile makes for ``projects.json``."""
_PROC = Path("/proc")


def gemini_home(env: Mapping[str, str]) -> str | None:
    """The home Gemini keeps ``.gemini`` in for a process with ``env`` (its own override,
    ``GEMINI_CLI_HOME``, else ``HOME``), or None if neither is set."""
    return env.get("GEMINI_CLI_HOME") or env.get("HOME") or None


def clear_orphaned_lock(home: str) -> bool:
    """Remove ``<home>/.gemini/projects.json.lock`` if no live Gemini process uses ``home``;
    True if it was removed. Cheap when there is no lock: one ``stat``."""
    lock = Path(home) / REGISTRY_LOCK
    if not lock.is_dir() or _gemini_running(Path(home)):
        return False
    try:
        lock.rmdir()  # only ever empty; a non-empty directory is not proper-lockfile's
    except OSError:
        return False  # gone meanwhile, or not a lock after all: leave it be
    return True


def _gemini_running(home: Path) -> bool:
    """Whether a live process named for Gemini may use ``home`` (one whose environment
    cannot be read counts: it might)."""
    wanted = os.path.realpath(home)
    for proc in _PROC.iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if not _runs_gemini((proc / "cmdline").read_bytes()):
                continue
            environ = (proc / "environ").read_bytes()
        except FileNotFoundError:
            continue  # exited while we looked
        except OSError:
            return True  # not ours to read: it might hold the lock
        theirs = gemini_home(_parse_environ(environ)) or _account_home(proc)
        if theirs is None or os.path.realpath(theirs) == wanted:
            return True
    return False


def _runs_gemini(cmdline: bytes) -> bool:
    """Whether a command line runs Gemini CLI: its program, or the script the program runs
    (``node .../gemini.js``), is named for Gemini. A shell whose script merely mentions a
    ``gemini-shell`` temporary file (Gemini's own shell tool, which may outlive it) is not."""
    program, *args = cmdline.split(b"\0")
    script = next((arg for arg in args if arg and not arg.startswith(b"-")), b"")
    return _named_for_gemini(program) or _named_for_gemini(script)


def _named_for_gemini(path: bytes) -> bool:
    """A path (without blanks: not a shell script) whose last part names Gemini."""
    return path.split() == [path] and b"gemini" in os.path.basename(path)


def _account_home(proc: Path) -> str | None:
    """The home of the account ``proc`` runs as: where Node looks when HOME is unset."""
    try:
        return pwd.getpwuid(proc.stat().st_uid).pw_dir
    except (OSError, KeyError):
        return None


def _parse_environ(raw: bytes) -> dict[str, str]:
    """``/proc/<pid>/environ`` (NUL-separated ``NAME=value``) as a dict."""
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {os.fsdecode(name): os.fsdecode(value) for name, _, value in pairs}
