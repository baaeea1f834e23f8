"""The daemon's own directories (runtime and state): private to its user, or refused.

What is in them (the sockets clients send secrets to, the session table, transcripts) must
not be reachable by anyone else, so a directory is used only if it ends up owned by this
user with mode 0700, and only where nobody else can move it or put another in its place:

- one the daemon creates is made 0700; one that exists and is ours is tightened to 0700
  with ``fchmod`` on a descriptor opened ``O_NOFOLLOW | O_DIRECTORY``: never a ``chmod``
  through a symlink, so a link can never make the daemon change someone else's directory;
- a shared directory itself (world-writable or sticky, such as /tmp) is refused, never
  tightened (tightening /tmp would break every other user of it);
- every ancestor others may write to must be sticky (only an entry's owner may rename or
  remove it there) and the entry under it on our path must be ours; a world-writable
  ancestor without the sticky bit is refused (anyone could swap our path away);
- a directory directly inside a shared sticky directory (the /tmp fallback) that existed
  before the daemon must be ours and already exactly 0700: anyone could have created it
  first, prepared for us.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from pathlib import Path

from agentplex.protocol.errors import UnsafeDirectory

PRIVATE_MODE = 0o700


def prepare_private_dir(path: Path) -> Path:
    """Create ``path`` mode 0700, or check and tighten it; returns its real path.

    Raises UnsafeDirectory where the rules above refuse it.
    """
    path = Path(os.path.abspath(path))
    made = _make_dirs(path)
    try:
        return _claim(path, created=path in made)
    except UnsafeDirectory:
        # A refused dir is not left behind: only what this call made, innermost first.
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` 0700 and its missing parents (as ``mkdir -p``); the dirs this call
    made, outermost first."""
    missing = list(itertools.takewhile(lambda parent: not parent.exists(), path.parents))
    made = [parent for parent in reversed(missing) if _mkdir(parent, 0o777)]
    return [*made, path] if _mkdir(path) else made


def _claim(path: Path, *, created: bool) -> Path:
    """Check (and tighten) an existing ``path``; returns its real path."""
    real = Path(os.path.realpath(path))
    in_shared_dir = _check_ancestors(path, real)
    fd = _open_dir(path, real)
    try:
        st = os.fstat(fd)
        _check_private(path, st, exact=in_shared_dir and not created)
        if stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    return real


def _mkdir(path: Path, mode: int = PRIVATE_MODE) -> bool:
    """Create ``path`` with ``mode`` (0700 is kept whatever the umask); False if something
    is already there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    return True


def _check_ancestors(path: Path, real: Path) -> bool:
    """Refuse a real path that others could change; True if its parent is a shared sticky
    directory (such as /tmp)."""
    for ancestor in real.parents:
        mode = os.stat(ancestor).st_mode
        if not mode & stat.S_IWOTH:
            continue
        if not mode & stat.S_ISVTX:
            raise UnsafeDirectory(
                f"{path} is inside {ancestor}, which anyone may write to and which has no "
                "sticky bit: choose a directory of your own"
            )
        entry = ancestor / real.relative_to(ancestor).parts[0]
        owner = os.lstat(entry).st_uid
        if owner not in (os.getuid(), 0):
            raise UnsafeDirectory(
                f"{entry} (on the way to {path}) belongs to uid {owner}, not to this user: "
                "someone else created it; choose another directory or remove it"
            )
    return bool(os.stat(real.parent).st_mode & stat.S_IWOTH)


def _open_dir(path: Path, real: Path) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(real, flags)
    except OSError as exc:  # replaced by a symlink or a file since it was resolved
        raise UnsafeDirectory(f"cannot open {path} as a directory: {exc.strerror}") from None


def _check_private(path: Path, st: os.stat_result, *, exact: bool) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}): "
            "someone else created it; choose another directory or remove it"
        )
    if mode & (stat.S_IWOTH | stat.S_ISVTX):
        raise UnsafeDirectory(
            f"{path} is a shared directory (mode {mode:o}): give the daemon a directory "
            "of its own (e.g. a subdirectory it creates)"
        )
    if exact and mode != PRIVATE_MODE:
        raise UnsafeDirectory(
            f"{path} existed before the daemon with mode {mode:o} (not 700) inside a shared "
            "directory: someone may have prepared it; remove it and start again"
        )


def unlink_if_bound(path: Path, bound: os.stat_result) -> None:
    """Remove the socket file at ``path`` if it is still the one that was bound (``bound``
    is its lstat then): another daemon may have bound a new one there since."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino):
        path.unlink(missing_ok=True)
