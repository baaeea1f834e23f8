"""Api: every request type carried out against a real SessionManager with real children
(no ZeroMQ control socket), the role table checked before anything happens, and every log
line a request causes tagged with it."""

from __future__ import annotations

import os
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import msgspec
import pytest
import structlog
import zmq
import zmq.asyncio
from structlog.testing import capture_logs
from structlog.typing import EventDict

from agentplex import protocol as p
from agentplex.protocol import Role
from agentplex.protocol.errors import EXIT_NOPERM, Forbidden
from agentplex.protocol.panels import PanelAction, PanelConfig
from agentplex.supervisor import api as api_module
from agentplex.supervisor import control, logs, request_context
from agentplex.supervisor.api import REQUIRED_ROLE, Api, Caller
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.bus import Bus, Gap, Message, Subscription
from agentplex.supervisor.config import Config
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.control import ControlServer
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.personas import PersonaRegistry
from agentplex.supervisor.process_group import ChildReaper
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.scanner import ProcessScanner
from agentplex.supervisor.table import SessionTable

T = TypeVar("T")
CAT = ["cat"]
SLEEP = ["sleep", "300"]
OPERATOR_REQUESTS: list[p.Request] = [
    p.Start(id=11, backend="exec", argv=CAT),
    p.Send(id=12, message="hi"),
    p.Interrupt(id=13),
    p.Terminate(id=14),
    p.Switch(id=15, session="whatever"),
    p.Permit(id=16, allow=True),
    p.PanelCreate(id=17, config=PanelConfig(topic="t")),
    p.PanelSay(id=18, panel="x", text="hi"),
    p.PanelReact(id=19, panel="x", message="m", emoji="+1"),
    p.PanelDecide(id=20, panel="x", proposal="ship it"),
    p.PanelControl(id=21, panel="x", action=PanelAction.END),
    p.PanelNext(id=22, panel="x", participant="QA"),
]


# ------------------------------------------------------------------ harness


@contextmanager
def event_publisher() -> Iterator[tuple[EventPublisher, Callable[[bytes], Subscription]]]:
    """The daemon's EventPublisher, and how a test subscribes to what it publishes. The
    one place that knows how events are wired (an in-process bus now)."""
    bus = Bus()
    try:
        yield EventPublisher(bus), bus.subscribe
    finally:
        bus.close()


@dataclass
class Harness:
    """An Api over a real SessionManager, and the daemon events it publishes."""

    api: Api
    manager: SessionManager
    subscribe: Callable[[bytes], Subscription]

    async def ask(self, request: p.Request, role: Role = Role.ADMIN) -> p.Reply:
        return await self.api.handle(request, caller(role))

    async def start_cat(self) -> str:
        reply = await self.ask(p.Start(backend="exec", argv=CAT))
        assert isinstance(reply, p.Started), reply
        return reply.session.id


def caller(role: Role) -> Caller:
    return Caller(transport="inproc", identity=f"test-{role}", role=role)


def daemon_info(config: Config) -> p.DaemonInfo:
    return p.DaemonInfo(
        pid=os.getpid(),
        version="test",
        protocol=p.PROTOCOL_VERSION,
        runtime_dir=config.runtime_dir,
        state_dir=config.state_dir,
        started_at=time.time(),
        sessions=0,
    )


@asynccontextmanager
async def running_api(base: Path) -> AsyncIterator[Harness]:
    """What daemon.py's Server._manager assembles, minus the control socket; every
    session is terminated on the way out."""
    config = Config(runtime_dir=str(base / "run"), state_dir=str(base / "state"))
    registry, reaper, flusher = SessionRegistry(), ChildReaper(), Flusher()
    await anyio.Path(config.state_dir).mkdir(mode=0o700)
    with event_publisher() as (publisher, subscribe):
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            tg.start_soon(flusher.run)
            context = SessionContext(
                config=config,
                events=publisher,
                reaper=reaper,
                table=SessionTable(Path(config.state_dir)),
                metrics=Metrics(),
                scanner=ProcessScanner(),
                flusher=flusher,
                death_pact=None,
            )
            manager = SessionManager(
                context=context,
                backends=BackendRegistry.with_defaults(),
                personas=PersonaRegistry.with_defaults(),
                registry=registry,
                task_group=tg,
            )
            try:
                yield Harness(Api(manager, lambda: daemon_info(config)), manager, subscribe)
            finally:
                with anyio.CancelScope(shield=True), anyio.fail_after(30):
                    await manager.shutdown()
                tg.cancel_scope.cancel()


@pytest.fixture
def with_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Harness], Awaitable[T]]], T]:
    """Run ``scenario(harness)`` in an event loop of its own; returns what it returns."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # only built-in personas

    def run(scenario: Callable[[Harness], Awaitable[T]]) -> T:
        async def main() -> T:
            async with running_api(tmp_path) as harness:
                return await scenario(harness)

        return anyio.run(main)

    return run


WithApi = Callable[[Callable[[Harness], Awaitable[Any]]], Any]


async def next_event(
    events: Subscription, predicate: Callable[[p.Event], bool], timeout: float = 10.0
) -> p.Event:
    """The first event published that satisfies ``predicate``, failing after ``timeout``."""
    with anyio.fail_after(timeout):
        async for item in events:
            if isinstance(item, Message) and predicate(item.event):
                return item.event
    raise AssertionError("the bus closed")


def reaches_seq(seq: int) -> Callable[[p.Event], bool]:
    """A predicate: a chunk message that holds chunk ``seq`` (or a later one)."""

    def match(event: p.Event) -> bool:
        chunks = p.expand(event) if isinstance(event, p.Chunk | p.ChunkBatch) else []
        return any(c.seq >= seq for c in chunks)

    return match


def replayed_chunks(reply: p.Reply) -> list[p.Chunk]:
    assert isinstance(reply, p.Replayed), reply
    return [c for raw in reply.chunks for c in p.expand(p.chunk_decoder.decode(bytes(raw)))]


# ------------------------------------------------------------------ the role table


def test_every_request_type_has_a_least_role_in_the_table() -> None:
    assert set(REQUIRED_ROLE) == set(typing.get_args(p.Request))


def test_read_only_requests_need_observer_and_session_changes_need_operator() -> None:
    observer = {p.ListSessions, p.Inspect, p.Replay, p.ListPersonas, p.ListBackends, p.Sync}
    observer |= {p.PanelList, p.PanelShow, p.PanelReport}
    assert {t for t, role in REQUIRED_ROLE.items() if role is Role.OBSERVER} == observer | {p.Ping}
    assert {type(r) for r in OPERATOR_REQUESTS} == {
        t for t, role in REQUIRED_ROLE.items() if role is Role.OPERATOR
    }


def test_roles_are_ordered_observer_then_operator_then_admin() -> None:
    assert [r.rank for r in (Role.OBSERVER, Role.OPERATOR, Role.ADMIN)] == [0, 1, 2]
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.OPERATOR)
    assert not Role.OBSERVER.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)


def test_forbidden_has_its_own_code_and_exit_code() -> None:
    assert (Forbidden.code, Forbidden.exit_code, EXIT_NOPERM) == ("forbidden", 77, 77)


def test_an_observer_is_forbidden_every_operator_request_and_nothing_happens(
    with_api: WithApi,
) -> None:
    async def scenario(h: Harness) -> None:
        for request in OPERATOR_REQUESTS:
            reply = await h.ask(request, Role.OBSERVER)
            assert isinstance(reply, p.Error), reply
            assert (reply.id, reply.code) == (request.id, "forbidden")
            kind = api_module.request_type(request)
            assert f"'{kind}'" in reply.message
            assert "observer" in reply.message and "operator" in reply.message
        assert h.manager.registry.snapshot() == ([], None)

    with_api(scenario)


def test_a_type_missing_from_the_table_is_refused_even_to_an_admin(
    with_api: WithApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "REQUIRED_ROLE", {})

    async def scenario(h: Harness) -> p.Reply:
        return await h.ask(p.Ping(id=3), Role.ADMIN)

    reply = with_api(scenario)
    assert isinstance(reply, p.Error) and reply.code == "forbidden"


def test_an_observer_may_make_every_read_only_request(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> list[p.Reply]:
        sid = await h.start_cat()
        requests: list[p.Request] = [
            p.ListSessions(),
            p.Inspect(session=sid),
            p.Replay(session=sid),
            p.ListPersonas(),
            p.ListBackends(),
            p.Sync(token="t"),
            p.Ping(),
        ]
        return [await h.ask(request, Role.OBSERVER) for request in requests]

    replies = with_api(scenario)
    assert not [r for r in replies if isinstance(r, p.Error)]


def test_an_operator_can_start_send_and_terminate(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> list[p.Reply]:
        started = await h.ask(p.Start(backend="exec", argv=CAT), Role.OPERATOR)
        assert isinstance(started, p.Started), started
        sid = started.session.id
        sent = await h.ask(p.Send(session=sid, message="hi"), Role.OPERATOR)
        ended = await h.ask(p.Terminate(session=sid), Role.OPERATOR)
        return [started, sent, ended]

    _, sent, ended = with_api(scenario)
    assert isinstance(sent, p.Sent)
    assert isinstance(ended, p.Terminated)
    assert ended.session.status is p.SessionStatus.TERMINATED


# ------------------------------------------------------------------ each request type


def test_start_runs_the_command_and_registers_the_session(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> tuple[p.Reply, bool]:
        reply = await h.ask(p.Start(id=7, backend="exec", argv=CAT, tag="api"))
        assert isinstance(reply, p.Started), reply
        return reply, h.manager.registry.get(reply.session.id).pid is not None

    reply, has_pid = with_api(scenario)
    assert isinstance(reply, p.Started) and reply.id == 7
    assert reply.session.tag == "api" and reply.session.status is p.SessionStatus.RUNNING
    assert has_pid


def test_send_reaches_the_child_and_replay_returns_what_it_said(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> tuple[p.Reply, list[p.Chunk]]:
        sid = await h.start_cat()
        with h.subscribe(p.chunk_topic(sid)) as chunks:
            sent = await h.ask(p.Send(id=8, session=sid, message="hello"))
            await next_event(chunks, reaches_seq(1))
        return sent, replayed_chunks(await h.ask(p.Replay(session=sid)))

    sent, chunks = with_api(scenario)
    assert isinstance(sent, p.Sent) and sent.id == 8
    assert [c.text for c in chunks] == ["hello"]


def test_replay_pages_and_clamps_a_nonsense_range(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> list[p.Reply]:
        sid = await h.start_cat()
        with h.subscribe(p.chunk_topic(sid)) as chunks:
            for n in (1, 2, 3):  # one at a time: each echo is a chunk of its own
                await h.ask(p.Send(session=sid, message=f"line {n}"))
                await next_event(chunks, reaches_seq(n))
        second = await h.ask(p.Replay(session=sid, from_seq=2, limit=1))
        nonsense = await h.ask(p.Replay(session=sid, from_seq=-5, limit=-1))
        await h.ask(p.Terminate(session=sid))
        after_end = await h.ask(p.Replay(session=sid, from_seq=4))
        return [second, nonsense, after_end]

    second, nonsense, after_end = with_api(scenario)
    assert [c.text for c in replayed_chunks(second)] == ["line 2"]
    assert [c.seq for c in replayed_chunks(nonsense)] == [1]  # from 1, at least one
    assert isinstance(second, p.Replayed) and (second.last_seq, second.ended) == (3, False)
    assert isinstance(after_end, p.Replayed) and after_end.ended


def test_interrupt_signals_the_session_process_group(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> tuple[p.Reply, p.SessionStatus]:
        reply = await h.ask(p.Start(backend="exec", argv=SLEEP))
        assert isinstance(reply, p.Started), reply
        with h.subscribe(p.SESSION_TOPIC) as lifecycle:
            interrupted = await h.ask(p.Interrupt(id=9, session=reply.session.id))
            ended = await next_event(  # sleep dies of the SIGINT
                lifecycle, lambda event: isinstance(event, p.SessionTerminated)
            )
        assert isinstance(ended, p.SessionTerminated), ended
        return interrupted, ended.session.status

    interrupted, status = with_api(scenario)
    assert isinstance(interrupted, p.Interrupted) and interrupted.id == 9
    assert status is p.SessionStatus.FAILED


def test_terminate_ends_the_session_politely(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> p.Reply:
        sid = await h.start_cat()
        return await h.ask(p.Terminate(id=10, session=sid, grace=5))

    reply = with_api(scenario)
    assert isinstance(reply, p.Terminated) and reply.id == 10
    assert reply.session.status is p.SessionStatus.TERMINATED and not reply.escalated


def test_list_inspect_and_switch_follow_the_active_session(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> tuple[str, str, list[p.Reply]]:
        first, second = await h.start_cat(), await h.start_cat()
        before = await h.ask(p.ListSessions())
        switched = await h.ask(p.Switch(session=first[:8]))
        inspected = await h.ask(p.Inspect())  # no session: the active one
        after = await h.ask(p.ListSessions())
        return first, second, [before, switched, inspected, after]

    first, second, (before, switched, inspected, after) = with_api(scenario)
    assert isinstance(before, p.Sessions) and before.active == second
    assert [s.id for s in before.sessions] == [first, second]
    assert isinstance(switched, p.Switched) and switched.session_id == first
    assert isinstance(inspected, p.Described) and inspected.session.id == first
    assert isinstance(after, p.Sessions) and after.active == first


def test_permit_with_nothing_waiting_is_nothing_to_answer(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> p.Reply:
        sid = await h.start_cat()
        return await h.ask(p.Permit(id=5, session=sid, allow=True))

    reply = with_api(scenario)
    assert isinstance(reply, p.Error)
    assert (reply.id, reply.code) == (5, "nothing_to_answer")


def test_personas_backends_and_ping_describe_the_daemon(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> list[p.Reply]:
        return [await h.ask(p.ListPersonas()), await h.ask(p.ListBackends()), await h.ask(p.Ping())]

    personas, backends, pong = with_api(scenario)
    assert isinstance(personas, p.Personas) and personas.personas and not personas.problems
    assert isinstance(backends, p.Backends)
    assert {b.id for b in backends.backends if b.available} >= {"exec", "demo"}
    assert isinstance(pong, p.Pong) and pong.daemon.pid == os.getpid()


def test_sync_publishes_the_token_on_the_daemon_topic(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> tuple[p.Reply, Message | Gap]:
        reply = await h.ask(p.Sync(id=4, token="tok"))
        with h.subscribe(p.DAEMON_TOPIC) as daemon_events:
            reply = await h.ask(p.Sync(id=4, token="tok"))
            return reply, daemon_events.receive_nowait()  # published before the reply

    reply, event = with_api(scenario)
    assert isinstance(reply, p.Synced) and (reply.id, reply.token) == (4, "tok")
    assert isinstance(event, Message) and event.event == p.SyncMark(token="tok")


def test_an_unknown_session_is_an_error_reply_with_the_request_id(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> p.Reply:
        return await h.ask(p.Inspect(id=21, session="no-such-session"))

    reply = with_api(scenario)
    assert isinstance(reply, p.Error) and (reply.id, reply.code) == (21, "unknown_session")


# ------------------------------------------------------------------ failures and logs


@contextmanager
def captured_logs() -> Iterator[list[EventDict]]:
    """capture_logs, plus the request context that logs.py configures (capture_logs
    alone replaces every configured processor, so the request would not show)."""
    with capture_logs() as entries:
        # capture_logs keeps the configured list instance; put the processor in front of it
        structlog.get_config()["processors"].insert(0, request_context.add_request)
        yield entries


def test_the_daemon_logging_names_the_request_served(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(structlog, "configure", lambda **kwargs: seen.update(kwargs))
    logs.configure_logging(Config(runtime_dir="/r", state_dir="/s", log_format="json"))
    assert request_context.add_request in seen["processors"]


def test_log_lines_a_request_causes_carry_its_id_type_and_caller(with_api: WithApi) -> None:
    async def scenario(h: Harness) -> list[EventDict]:
        with captured_logs() as entries:
            await h.ask(p.Start(id=31, backend="exec", argv=CAT))
        return entries

    entries = with_api(scenario)
    spawned = [e for e in entries if e["event"] == "process_spawned"]
    assert len(spawned) == 1
    assert spawned[0]["request_id"] == 31
    assert spawned[0]["request_type"] == "start"
    assert spawned[0]["caller"] == str(caller(Role.ADMIN))
    assert request_context.current() is None  # reset once answered


def test_a_bug_in_one_request_is_an_internal_error_reply_and_is_logged(
    with_api: WithApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness) -> tuple[p.Reply, p.Reply, list[EventDict]]:
        def broken(**_: object) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(h.manager.registry, "snapshot", broken)
        with captured_logs() as entries:
            failed = await h.ask(p.ListSessions(id=41))
        return failed, await h.ask(p.Ping(id=42)), entries

    failed, pong, entries = with_api(scenario)
    assert isinstance(failed, p.Error) and (failed.id, failed.code) == (41, "internal")
    assert "a bug" in failed.message
    assert isinstance(pong, p.Pong)  # the Api goes on answering
    [logged] = [e for e in entries if e["event"] == "request_failed"]
    assert logged["exc_info"] is True and logged["request_id"] == 41


# ------------------------------------------------------------------ ControlServer's bound


class _Gate(Api):
    """An Api whose every request waits for ``release``; counts requests in flight and
    sets ``full`` once ``bound`` of them are."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.in_flight = self.most = 0
        self.full, self.release = anyio.Event(), anyio.Event()

    async def handle(self, request: p.Request, caller: Caller) -> p.Reply:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.bound:
            self.full.set()
        await self.release.wait()
        self.in_flight -= 1
        return p.Pong(id=request.id, daemon=daemon_info(Config(runtime_dir="/r", state_dir="/s")))


def test_control_answers_at_most_max_in_flight_requests_at_once_the_rest_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "MAX_IN_FLIGHT", 3)
    gate = _Gate(bound=3)

    async def scenario() -> list[int]:
        ctx = zmq.asyncio.Context()
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind("inproc://api-test-control")
        dealer.connect("inproc://api-test-control")
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(ControlServer(router, gate).serve)
                for rid in range(1, 11):
                    await dealer.send(p.encode(p.Ping(id=rid)))
                with anyio.fail_after(10):
                    await gate.full.wait()
                for _ in range(50):  # give the loop every chance to read one more frame
                    await anyio.lowlevel.checkpoint()
                assert gate.most == 3
                assert router.getsockopt(zmq.EVENTS) & zmq.POLLIN  # the rest wait in ZeroMQ
                gate.release.set()
                with anyio.fail_after(10):
                    replies = [p.reply_decoder.decode(await dealer.recv()) for _ in range(10)]
                tg.cancel_scope.cancel()
        finally:
            for sock in (router, dealer):
                sock.close(linger=0)
            ctx.term()
        return sorted(r.id for r in replies)

    assert anyio.run(scenario) == list(range(1, 11))
    assert gate.most == 3


def test_an_ipc_caller_is_the_socket_owner_with_every_right() -> None:
    who = control.ipc_caller(b"\x00\x80\x00\x41\xa7")
    assert who == Caller(transport="ipc", identity="00800041a7", role=Role.ADMIN)
    assert msgspec.structs.asdict(who)["role"] is Role.ADMIN
