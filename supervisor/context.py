"""SessionContext: the daemon services every session uses, assembled once in ``daemon.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentplex.supervisor.config import Config
from agentplex.supervisor.descriptors import FdBudget
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.events import EventPublisher
from agentplex.supervisor.metrics import Metrics
from agentplex.supervisor.process_group import ChildReaper, DeathPact
from agentplex.supervisor.scanner import ProcessScanner
from agentplex.supervisor.table import SessionTable


@dataclass(frozen=True)
class SessionContext:
    """The daemon services every session uses."""

    config: Config
    events: EventPublisher
    reaper: ChildReaper
    table: SessionTable
    metrics: Metrics
    scanner: ProcessScanner
    flusher: Flusher
    death_pact: DeathPact | None
    """How agents die with the daemon; None when they are configured to outlive it."""
    fds: FdBudget = field(default_factory=FdBudget.measure)
    """The file descriptors sessions may take (the daemon measures it once it serves)."""
