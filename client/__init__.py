"""The agentplex client library: talk to a daemon, watch its events."""

from agentplex.client.async_client import AsyncClient, Subscription
from agentplex.client.errors import AgentplexError, DaemonNotRunning, RequestTimeout
from agentplex.client.sync_client import Client, SyncSubscription

__all__ = [
    "AgentplexError",
    "AsyncClient",
    "Client",
    "DaemonNotRunning",
    "RequestTimeout",
    "Subscription",
    "SyncSubscription",
]
