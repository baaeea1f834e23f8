"""The thin client library stands on the wire contract alone."""

from __future__ import annotations

import json
import subprocess
import sys

_LOADED = """
import json, sys
import agentplex.client
from agentplex.client import AsyncClient, Client
print(json.dumps(sorted(name for name in sys.modules if name.startswith("agentplex."))))
"""


def test_importing_the_client_loads_no_daemon_plugin_or_cli_module() -> None:
    # A fresh interpreter: this test process has long since imported the daemon.
    out = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert "agentplex.client.async_client" in loaded
    assert "agentplex.protocol" in loaded
    foreign = [name for name in loaded if name.split(".")[1] in {"supervisor", "plugins", "cli"}]
    assert foreign == []
