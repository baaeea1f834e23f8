"""SessionCgroup: a cgroup being removed (ENODEV) reads as empty rather than failing a stop."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from agentplex.supervisor.cgroups import SessionCgroup


def _dying(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make the cgroup's files answer as the kernel does while the directory is removed."""

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError(errno.ENODEV, "No such device", str(self))

    monkeypatch.setattr(Path, method, refuse)


def test_a_cgroup_being_removed_has_no_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI: 1,000 sessions stopping at once; one read of cgroup.procs answered ENODEV and the
    # daemon's shutdown ended with exit 1.
    _dying(monkeypatch, "read_text")
    assert SessionCgroup(tmp_path).members() == []


def test_killing_a_cgroup_being_removed_falls_back_to_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cgroup.procs").write_text("")
    _dying(monkeypatch, "write_text")
    SessionCgroup(tmp_path).kill()  # nothing left to signal; no error


def test_other_errors_still_surface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(PermissionError):
        SessionCgroup(tmp_path).members()
