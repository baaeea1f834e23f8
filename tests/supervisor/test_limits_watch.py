"""LimitWatch walks /proc in a worker thread and applies the figures on the event loop."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio

from agentplex.protocol import SessionStatus
from agentplex.supervisor.config import Config
from agentplex.supervisor.limits import LimitWatch
from agentplex.supervisor.resources import TreeUsage
from agentplex.supervisor.session import Session


@dataclass
class _Chunks:
    last_activity: float = field(default_factory=time.time)


@dataclass
class FakeSession:
    """What LimitWatch reads and writes of a session."""

    id: str
    pid: int | None
    status: SessionStatus = SessionStatus.RUNNING
    created_at: float = field(default_factory=time.time)
    resources: TreeUsage | None = None
    chunks: _Chunks = field(default_factory=_Chunks)


def test_the_proc_walk_runs_off_the_event_loop_and_the_figures_are_applied_on_it(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(["sleep", "30"])
    session = FakeSession("s1", child.pid)
    threads: dict[str, int] = {}
    changes: list[int] = []

    async def main() -> None:
        threads["loop"] = threading.get_ident()
        async with anyio.create_task_group() as tg:
            config = Config(runtime_dir=str(tmp_path / "run"), state_dir=str(tmp_path / "state"))
            watch = LimitWatch(config, tg, lambda: changes.append(threading.get_ident()))
            real_sample = watch._sampler.sample

            def recording_sample(*args: Any, **kwargs: Any) -> dict[str, TreeUsage]:
                threads["sampler"] = threading.get_ident()
                return real_sample(*args, **kwargs)

            watch._sampler.sample = recording_sample  # type: ignore[method-assign]
            await watch.check(lambda: [cast(Session, session)])

    try:
        anyio.run(main)
    finally:
        child.kill()
        child.wait()

    assert threads["sampler"] != threads["loop"]
    assert session.resources is not None and session.resources.processes == 1
    assert session.resources.rss_bytes > 0
    assert changes == [threads["loop"]]  # the change callback ran on the loop


def test_a_session_that_ended_while_sampling_is_left_as_it_was(tmp_path: Path) -> None:
    session = FakeSession("s1", os.getpid())

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            config = Config(runtime_dir=str(tmp_path / "run"), state_dir=str(tmp_path / "state"))
            watch = LimitWatch(config, tg, lambda: None)
            real_sample = watch._sampler.sample

            def ending_sample(*args: Any, **kwargs: Any) -> dict[str, TreeUsage]:
                session.status = SessionStatus.EXITED  # it ends while /proc is walked
                return real_sample(*args, **kwargs)

            watch._sampler.sample = ending_sample  # type: ignore[method-assign]
            await watch.check(lambda: [cast(Session, session)])

    anyio.run(main)
    assert session.resources is None
