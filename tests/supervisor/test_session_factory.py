"""A session taken back from the durable table is built as it was first built."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from agentplex import protocol as p
from agentplex.plugins.codex import PASSED_THROUGH
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.config import DEFAULT_ENV_ALLOWLIST, Config
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.factory import SessionFactory
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.personas import BUILTIN_DIR, PersonaRegistry, TemplateLoader
from agentplex.supervisor.process_group import ChildReaper
from agentplex.supervisor.scanner import SESSION_MARKER, ProcessScanner
from agentplex.supervisor.session import Session
from agentplex.supervisor.table import SessionTable


def events() -> EventPublisher:
    """Where sessions publish: an in-process bus nobody reads (building one publishes
    nothing, and nothing needs to run)."""
    return EventPublisher(Bus())


@pytest.fixture
def context(tmp_path: Path) -> Iterator[SessionContext]:
    """The daemon services of a daemon whose state is in ``tmp_path``, nothing running."""
    state = tmp_path / "state"
    state.mkdir()
    config = Config(
        runtime_dir=str(tmp_path / "run"),
        state_dir=str(state),
        env_allowlist=("LANG", "AGENTPLEX_TEST_UNSET"),
    )
    flusher = Flusher()
    yield SessionContext(
        config=config,
        events=events(),
        reaper=ChildReaper(),
        table=SessionTable(state),
        metrics=Metrics(),
        scanner=ProcessScanner(),
        flusher=flusher,
        death_pact=None,
    )
    anyio.run(_stop, flusher)


async def _stop(flusher: Flusher) -> None:
    """End a Flusher that never ran: its run closes its queue on the way out."""
    with anyio.move_on_after(0):
        await flusher.run()


def environment_of(session: Session) -> dict[str, str]:
    """The environment the session's processes get (Session keeps it to itself)."""
    return session._env


QA = PersonaRegistry(TemplateLoader([BUILTIN_DIR])).get("qa")
"""A built-in persona (the user's templates left out): instructions, tools, a policy."""

CASES = [
    pytest.param(
        p.Start(
            backend="codex",
            prompt="find the bug",
            persona="qa",
            model="gpt-test",
            permission_policy=p.PermissionPolicy.ALLOW,
            tag="factory",
            env={"EXTRA": "given", "SESSION_TOKEN": "tok-secret"},
        ),
        {
            "LANG": "C.UTF-8",
            "OPENAI_API_KEY": "sk-test",
            "EXTRA": "given",
            "SESSION_TOKEN": "tok-secret",
        },
        {
            "mode": p.BackendMode.TURN,
            "persona": "QA",
            "instructions": QA.instructions.strip(),
            "model": "gpt-test",
            "allowed_tools": ("Read", "Grep", "Glob", "Bash"),
            "permission_policy": p.PermissionPolicy.ALLOW,
            "command": (),
        },
        id="codex-with-a-persona",
    ),
    pytest.param(
        p.Start(backend="exec", argv=["cat", "-n"], env={"EXTRA": "given", "LANG": "mine"}),
        {"LANG": "mine", "EXTRA": "given"},
        {
            "mode": p.BackendMode.LONG_LIVED,
            "persona": None,
            "instructions": None,
            "model": None,
            "allowed_tools": (),
            "permission_policy": p.PermissionPolicy.ASK,
            "command": ("cat", "-n"),
        },
        id="exec-with-a-command",
    ),
]


@pytest.mark.parametrize(("start", "env", "spec"), CASES)
def test_a_session_rebuilt_from_its_record_gets_the_environment_and_spec_it_started_with(
    start: p.Start,
    env: dict[str, str],
    spec: dict[str, object],
    context: SessionContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")  # allowlisted
    monkeypatch.setenv("SECRET_TOKEN", "leak-me")  # not allowlisted
    monkeypatch.delenv("AGENTPLEX_TEST_UNSET", raising=False)
    for variable in PASSED_THROUGH:  # what the codex backend adds: one variable
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    request = msgspec.structs.replace(start, cwd=str(tmp_path))
    persona = QA if request.persona else None
    backend = BackendRegistry.with_defaults().get(request.backend or "")
    factory = SessionFactory(context)

    fresh_spec, prompt = factory.spec(request, backend, persona)
    argv = backend.argv(fresh_spec, prompt, None)
    fresh = factory.new(fresh_spec, backend, tag=request.tag, persona=persona, argv=argv)
    context.table.save_now(fresh)
    context.table.close()
    (record,) = SessionTable(Path(context.config.state_dir)).load()  # as a restart reads it
    rebuilt = factory.rebuild(record, backend)
    defaults = {k: os.environ[k] for k in DEFAULT_ENV_ALLOWLIST if k in os.environ}
    try:
        assert "tok-secret" not in str(record)  # kept in the runtime dir's secrets instead
        assert environment_of(fresh) == {**defaults, **env, SESSION_MARKER: fresh.id}
        assert environment_of(rebuilt) == environment_of(fresh)
        assert {name: getattr(fresh.spec, name) for name in spec} == spec
        assert fresh.spec.cwd == tmp_path
        assert rebuilt.spec == fresh.spec
        assert (rebuilt.id, rebuilt.tag, rebuilt.persona_icon) == (
            fresh.id,
            fresh.tag,
            fresh.persona_icon,
        )
        assert rebuilt.transcript.path == fresh.transcript.path and rebuilt.transcript.writable
    finally:
        rebuilt.transcript.close()
        fresh.transcript.close()
