"""The daemon: a small Server with a clear start / serve / shutdown lifecycle."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import anyio
import structlog
import zmq
import zmq.asyncio
from anyio.abc import TaskGroup, TaskStatus

from agentplex.protocol import MAX_FRAME_BYTES, PROTOCOL_VERSION, DaemonInfo, SessionInfo
from agentplex.protocol.errors import DaemonAlreadyRunning, MetricsUnavailable, UnsafeDirectory
from agentplex.supervisor import _linux, bounds
from agentplex.supervisor.api import Api
from agentplex.supervisor.backends import BackendRegistry
from agentplex.supervisor.bus import Bus
from agentplex.supervisor.config import Config
from agentplex.supervisor.context import SessionContext
from agentplex.supervisor.control import ControlServer
from agentplex.supervisor.descriptors import FdBudget, FdLimit, open_count, raise_limit
from agentplex.supervisor.dirs import unlink_if_bound
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.eviction import Evictor, held_after_restart
from agentplex.supervisor.limits import LimitWatch
from agentplex.supervisor.locks import RuntimeLock, StateLock
from agentplex.supervisor.logs import configure_logging
from agentplex.supervisor.lost_sessions import lost_records
from agentplex.supervisor.manager import SessionManager
from agentplex.supervisor.metrics import Metrics, MetricsServer
from agentplex.supervisor.notify import Notifier
from agentplex.supervisor.panels.api import PanelApi
from agentplex.supervisor.panels.service import PanelService
from agentplex.supervisor.personas import PersonaRegistry
from agentplex.supervisor.process_group import ChildReaper, DeathPact, kill_everything
from agentplex.supervisor.pub_sink import PubSink
from agentplex.supervisor.recovery import restore_sessions
from agentplex.supervisor.registry import SessionRegistry
from agentplex.supervisor.retention import RetentionService
from agentplex.supervisor.scanner import ProcessScanner
from agentplex.supervisor.table import SessionTable

MAX_ZMQ_MESSAGE = 8 * MAX_FRAME_BYTES
"""Past this ZeroMQ drops the sender's connection unanswered; up to it a frame is read, and
one over ``MAX_FRAME_BYTES`` is answered ``frame_too_large`` with its request id. Our client
never sends one: it refuses a request over ``MAX_FRAME_BYTES`` before sending."""

log = structlog.get_logger(__name__)


class Server:
    """Binds the sockets, runs the control loop and the sessions, shuts down on a signal."""

    def __init__(self, config: Config, backends: BackendRegistry | None = None) -> None:
        self.config = config
        self.backends = backends or BackendRegistry.with_defaults()
        self.registry = SessionRegistry()
        self.reaper = ChildReaper()
        self.flusher = Flusher()
        self.death_pact: DeathPact | None = None
        self.scanner = ProcessScanner()
        """Which processes are whose: set up in :meth:`serve` (it may make a cgroup)."""
        self.table = SessionTable(Path(config.state_dir))
        self.started_at = time.time()
        self.should_exit = anyio.Event()
        self.personas = PersonaRegistry.with_defaults(backend.id for backend in self.backends)
        """Persona templates: read now, and again on SIGHUP (or a ``reload_personas``)."""
        self.bus = Bus()
        self.panels: PanelService | None = None
        """Every event the daemon publishes, for in-process consumers (the PUB socket is one)."""
        self.exit_code = 0
        """What :func:`run` exits with: 0, or 128 + the signal that forced a kill-now."""
        self.stop_signal: int | None = None
        """The signal that asked for the stop, if one did (a Ctrl-C exits 130)."""
        self._graceful: anyio.CancelScope | None = None
        """The graceful part of the shutdown, which a second signal cancels."""
        # -- systemd notify, metrics
        self.notifier = Notifier.from_environment()
        self.metrics = Metrics(backend.id for backend in self.backends)
        self.metrics_server: MetricsServer | None = None
        # -- file descriptors: the limit raised when serving begins, the budget after binding
        self.fd_limit = FdLimit(soft=0, hard=0, was=0)
        self.fds = FdBudget.measure(config.fd_reserve)

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT (or :attr:`should_exit`), then shut down cleanly."""
        self.fd_limit = raise_limit()
        with ExitStack() as stack:
            stack.enter_context(RuntimeLock(Path(self.config.runtime_dir), self.config.paths.lock))
            stack.enter_context(StateLock(Path(self.config.state_dir)))
            _linux.become_child_subreaper()
            self.scanner = ProcessScanner.for_mode(self.config.process_tracking)
            if not self.config.agents_outlive_daemon:
                self.death_pact = DeathPact.detect()  # before the reaper: it runs a probe
            ctx = zmq.asyncio.Context()
            stack.callback(ctx.term)
            control, events = self._bind(ctx, stack)
            stack.callback(self.notifier.close)
            await self._bind_metrics()
            pub_sink = PubSink(
                zmq.Socket.shadow(events.underlying),
                self._snapshot,
                max_message=self.config.pub_max_message_bytes,
            )
            pub_sink.attach(self.bus)
            await self._run(control, EventPublisher(self.bus), pub_sink)

    async def _run(
        self, control: zmq.asyncio.Socket, publisher: EventPublisher, pub_sink: PubSink
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self.reaper.run)
            tg.start_soon(self.flusher.run)
            manager = self._manager(publisher, tg)
            await self._recover(manager)
            keep = self.config.keep_ended
            evictor = Evictor(self.registry, self.bus, keep, publisher.list_changed)
            await tg.start(evictor.run)  # sessions over keep_ended gone before serving a list
            tg.start_soon(self.table.run)
            tg.start_soon(pub_sink.run)
            watch = LimitWatch(self.config, tg, publisher.list_changed, self.scanner)
            tg.start_soon(watch.run, self.registry.__iter__)
            self.panels = PanelService(Path(self.config.state_dir), manager, self.bus)
            await tg.start(self.panels.run)  # after recovery: the members' sessions are back
            api = Api(manager, self.info, PanelApi(self.panels))
            waiting = bounds.waiting_replies_bytes(self.config)
            await tg.start(ControlServer(control, api, waiting_bytes=waiting).serve)
            tg.start_soon(self._heartbeat, publisher)
            await tg.start(self._watch_signals)
            log.info(
                "daemon_ready",
                pid=os.getpid(),
                control=self.config.paths.control_endpoint,
                events=self.config.paths.events_endpoint,
                state_dir=self.config.state_dir,
                agents_die_with_daemon=self.death_pact.how if self.death_pact else "no",
                process_tracking=self.scanner.mode,
                fd_limit=self.fd_limit.soft,
                fd_limit_was=self.fd_limit.was,
                fd_hard_limit=self.fd_limit.hard,
                fds_open=open_count(),
                fd_reserve=self.fds.reserve,
                sessions_fit=self.fds.capacity,
            )
            self.notifier.ready(self.registry.snapshot()[0])
            self._start_services(tg)
            await self.should_exit.wait()
            await self._shutdown(manager)
            tg.cancel_scope.cancel()

    async def _recover(self, manager: SessionManager) -> None:
        """Take back the sessions a previous daemon left in the table."""
        loaded = self.table.load()
        found = lost_records(loaded, self.config.sessions_dir)  # transcripts the table lost
        self.table.add(found)
        records = held_after_restart(loaded + found, self.config.keep_ended, time.time())
        if not records:
            return
        sessions, _report = restore_sessions(records, self.backends, manager.context)
        for session in sessions:
            self.registry.register(session)
            self.table.changed(session)
            if not session.status.ended:
                await manager.adopt(session)

    def _manager(self, publisher: EventPublisher, tg: TaskGroup) -> SessionManager:
        # Measured now, the sockets bound and before any session: what the daemon itself holds.
        self.fds = FdBudget.measure(self.config.fd_reserve)
        self.metrics.fds = self.fds
        context = SessionContext(
            config=self.config,
            events=publisher,
            reaper=self.reaper,
            table=self.table,
            metrics=self.metrics,
            scanner=self.scanner,
            flusher=self.flusher,
            death_pact=self.death_pact,
            fds=self.fds,
        )
        return SessionManager(
            context=context,
            backends=self.backends,
            personas=self.personas,
            registry=self.registry,
            task_group=tg,
        )

    # -- systemd notify, metrics, retention

    async def _bind_metrics(self) -> None:
        """Listen for scrapes before serving anything, so a taken port fails the start."""
        if self.config.metrics_port is None:
            return
        from agentplex.supervisor import __version__

        self.metrics_server = MetricsServer(self.metrics, self.registry.snapshot, __version__)
        await self.metrics_server.bind(self.config.metrics_host, self.config.metrics_port)

    def _start_services(self, tg: TaskGroup) -> None:
        """The watchdog (after READY=1), the metrics endpoint, retention."""
        tg.start_soon(self.notifier.run_watchdog)
        if self.metrics_server is not None:
            tg.start_soon(self.metrics_server.serve)
        retention = RetentionService(self.config, self._live_transcripts)
        if retention.policy.enabled:
            tg.start_soon(retention.run)

    def _snapshot(self) -> tuple[list[SessionInfo], str | None]:
        """The registry's snapshot for ``list_changed``; every change to the session table
        passes here, so the systemd STATUS line follows it."""
        sessions, active = self.registry.snapshot()
        self.notifier.sessions_changed(sessions)
        return sessions, active

    def _live_transcripts(self) -> list[Path]:
        return [session.transcript.path for session in self.registry.unfinished()]

    def _bind(
        self, ctx: zmq.asyncio.Context, stack: ExitStack
    ) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        paths = self.config.paths
        control = ctx.socket(zmq.ROUTER)
        control.setsockopt(zmq.MAXMSGSIZE, MAX_ZMQ_MESSAGE)
        # High-water marks count messages: each is derived from a byte budget (bounds.py).
        control.setsockopt(zmq.SNDHWM, bounds.control_send_hwm(self.config))
        control.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full client queue says so (outbox.py)
        events = ctx.socket(zmq.PUB)
        events.setsockopt(zmq.SNDHWM, bounds.pub_send_hwm(self.config))
        for sock in (control, events):
            sock.setsockopt(zmq.LINGER, 0)
            stack.callback(sock.close)
        old_umask = os.umask(0o177)
        try:
            for sock, path in ((control, paths.control), (events, paths.events)):
                path.unlink(missing_ok=True)
                sock.bind(paths.control_endpoint if sock is control else paths.events_endpoint)
                # Only ours: if the runtime dir was removed, another daemon may bind there.
                stack.callback(unlink_if_bound, path, path.lstat())
        finally:
            os.umask(old_umask)
        return control, events

    async def _shutdown(self, manager: SessionManager) -> None:
        live = len(self.registry.unfinished())
        log.info("daemon_stopping", sessions=live)
        self.notifier.stopping(live)
        with anyio.CancelScope(shield=True):
            with anyio.CancelScope() as self._graceful:
                if self.panels is not None:  # panels stay as they are, to resume
                    self.panels.stop()
                if not self.exit_code:  # a second signal may have come before we got here
                    await manager.shutdown()
            if self.exit_code:
                await self._kill_all_now()
        log.info("daemon_stopped", exit_code=self.exit_code)

    async def _kill_all_now(self) -> None:
        """SIGKILL every live session's processes (strays too) and footer its transcript.

        Runs after the graceful shutdown's waiting was cancelled: its sessions are half
        terminated (SIGTERM sent, nothing recorded yet), and ``kill_now`` finishes them.
        """
        live = self.registry.unfinished()
        log.warning("daemon_killing_sessions", sessions=len(live))
        async with anyio.create_task_group() as tg:
            for session in live:
                tg.start_soon(session.kill_now, "daemon shutting down (killed at once)")
        await kill_everything(0, self.reaper, self.scanner)  # what sessions left, too

    async def _heartbeat(self, publisher: EventPublisher) -> None:
        while True:
            publisher.heartbeat(os.getpid(), len(self.registry.live()))
            await anyio.sleep(self.config.heartbeat_interval)

    async def _watch_signals(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # The receiver stays open through the shutdown: a closed one would give the
        # next SIGINT back to Python (a KeyboardInterrupt mid-write) and SIGTERM to the
        # default action (death without footers). The first signal asks for a graceful
        # stop; the second makes the stop a kill-now; later ones change nothing.
        # SIGHUP (systemctl reload) reads the persona templates again.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("personas_reloaded", signal=name, changes=self.personas.reload())
                elif not self.should_exit.is_set():
                    log.info("signal_received", signal=name)
                    self.stop_signal = signum
                    self.should_exit.set()
                elif not self.exit_code:
                    self._escalate(signum)

    def _escalate(self, signum: int) -> None:
        """A second SIGTERM/SIGINT while stopping: stop waiting out the grace period."""
        # 128 + signum, the shell's convention for "ended by this signal": 130 for
        # SIGINT (as the CLI's Ctrl-C), 143 for SIGTERM. systemd and scripts see that
        # the stop was forced and sessions were killed without their grace period.
        self.exit_code = 128 + signum
        log.warning("shutdown_escalated", signal=signal.Signals(signum).name)
        if self._graceful is not None:
            self._graceful.cancel()

    def info(self) -> DaemonInfo:
        """Who this daemon is, for ``ping``."""
        from agentplex.supervisor import __version__

        return DaemonInfo(
            pid=os.getpid(),
            version=__version__,
            protocol=PROTOCOL_VERSION,
            runtime_dir=self.config.runtime_dir,
            state_dir=self.config.state_dir,
            started_at=self.started_at,
            sessions=len(self.registry.live()),
            fd_limit=self.fds.limit,
            fds_open=open_count(),
            fd_reserve=self.fds.reserve,
        )


def run(config: Config) -> int:
    """Run a daemon in the foreground until it is told to stop; returns the exit code."""
    configure_logging(config)
    server = Server(config)
    try:
        anyio.run(server.serve)
    except (
        DaemonAlreadyRunning,
        MetricsUnavailable,
        UnsafeDirectory,
        PermissionError,
        ValueError,
    ) as exc:
        print(f"agentplex daemon: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    if server.exit_code:
        return server.exit_code  # a second signal forced the stop
    # A Ctrl-C ends a foreground daemon as it ends any command: 130, even when clean.
    return 128 + signal.SIGINT if server.stop_signal == signal.SIGINT else 0
