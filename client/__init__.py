"""The agentplex client library: talk to a daemon, watch its events."""

from agentplex.client.async_client import AsyncClient, Subscription
from agentplex.client.sync_client import Client, SyncSubscription
from agentplex.protocol.errors import AgentplexError, DaemonNotRunning, RequestTimeout

__all__ = [
    "AgentplexError",
    "AsyncClient",
    "Client",
    "DaemonNotRunning",
    "RequestTimeout",
    "Subscription",
    "SyncSubscription",
]
