"""The dashboard's token, kept in the state dir so that a restarted ``agentplex ui`` (an
upgrade, systemd restarting it) does not log out the pages that are open: their cookie
still names the token, and they reconnect and catch up by themselves.

``$AGENTPLEX_STATE_DIR/ui/token`` holds it: the directory 0700, the file 0600, written
whole under a temporary name and then linked into place, so a reader never sees half a
token. ``agentplex ui --new-token`` replaces it (every cookie issued before stops working).

A token file that others can read (or that is not ours, or is a symlink) is refused, not
quietly made private: whoever could read it may already hold the token, so keeping it
would keep a leaked credential valid. The error says to run ``--new-token``, which writes a
fresh private file and so fixes both at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path
from typing import Final

from agentplex.protocol.errors import UnsafeDirectory
from agentplex.ui.security import new_token

TOKEN_DIR: Final = "ui"
TOKEN_FILE: Final = "token"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{32,256}")
"""What :func:`~agentplex.ui.security.new_token` makes (43 characters); anything else is
not a token we wrote."""
_MAX_READ: Final = 1024


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_DIR / TOKEN_FILE


def load_token(state_dir: Path, *, rotate: bool = False) -> str:
    """The kept token (made on first use); with ``rotate``, a new one replacing it.

    Raises UnsafeDirectory if the token file or its directory is not private to this user.
    """
    path = token_path(state_dir)
    _private_dir(path.parent)
    if not rotate:
        kept = _read(path)
        if kept is not None:
            return kept
    token = new_token()
    if not _write(path, token, replace=rotate):
        # Another ``agentplex ui`` made it first (both started at once): use that one, so
        # the URLs both print work.
        kept = _read(path)
        assert kept is not None, f"{path} vanished right after it was made"
        return kept
    return token


def _private_dir(path: Path) -> None:
    """Make ``path`` (0700) or check it is a directory of ours; tighten its mode if loose
    (our own directory: making it private takes nothing from anyone)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=DIR_MODE)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory (a symlink?): remove it")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def _read(path: Path) -> str | None:
    """The token in ``path``, None if there is no file; UnsafeDirectory if it is not
    private, not ours, or not a token."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeDirectory(f"{path} is a symlink: {_FIX}") from None
        raise UnsafeDirectory(f"cannot read {path}: {exc.strerror}: {_FIX}") from None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise UnsafeDirectory(f"{path} is not a file of this user's: {_FIX}")
        if mode & 0o077:
            raise UnsafeDirectory(
                f"{path} is readable by others (mode {mode:04o}), so the token may have "
                f"leaked: {_FIX}"
            )
        text = file.read(_MAX_READ).decode("ascii", "replace").strip()
    if not _TOKEN_SHAPE.fullmatch(text):
        raise UnsafeDirectory(f"{path} does not hold a dashboard token: {_FIX}")
    return text


_FIX: Final = "run 'agentplex ui --new-token' to replace it"


def _write(path: Path, token: str, *, replace: bool) -> bool:
    """Write ``token`` to ``path`` whole and private. Without ``replace``, False (and
    nothing written) if ``path`` exists by then."""
    temporary = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a process of this pid that died mid-write
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if it exists: no two tokens race into place
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
