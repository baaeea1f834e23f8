"""Linux process controls the standard library does not expose (prctl through ctypes)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_child_subreaper() -> None:
    """Make orphaned descendants re-parent to this process instead of to init.

    Agents' tools often ``setsid()`` or double-fork; as a subreaper the daemon still
    sees (and reaps) them, so terminating a session can find every last process.
    """
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(expected_parent: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """In a freshly forked child: ask for ``sig`` when the parent dies.

    Runs between fork and exec. If the parent already died (the race the man page
    warns about), exit at once rather than run unowned.
    """
    _prctl(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != expected_parent:
        os._exit(1)


def prepare_leader(expected_parent: int | None) -> None:
    """In a freshly forked session leader: become a child subreaper (kept across execve),
    so what its descendants orphan stays in its tree; and with ``expected_parent``, die
    with that parent as :func:`die_with_parent` does."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if expected_parent is not None:
        die_with_parent(expected_parent)
