"""Each session gets an explicit environment, never the whole daemon environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.protocol import errors as e

PRINT_ENV = "import os, json\nprint(json.dumps(dict(os.environ)), flush=True)\ninput()"


def test_a_session_sees_the_allowlist_its_overrides_and_its_marker_only(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, env={"SECRET_TOKEN": "leak-me", "LANG": "C.UTF-8"})
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            info = client.start(
                "exec", argv=[sys.executable, "-c", PRINT_ENV], env={"EXTRA": "given"}
            )
            line = next_event(events, is_chunk(info.id, text="{"))
        env = json.loads(line.text)  # type: ignore[union-attr]
        assert "SECRET_TOKEN" not in env
        assert env["LANG"] == "C.UTF-8"
        assert env["EXTRA"] == "given"
        assert env["AGENTPLEX_SESSION_ID"] == info.id
    finally:
        assert daemon.stop() == 0


def test_a_backend_whose_cli_is_missing_is_refused_at_start_saying_where_it_looked(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, env={"AGENTPLEX_CLAUDE_CLI": "/nowhere/claude"})
    try:
        with daemon.client() as client:
            with pytest.raises(e.BackendUnavailable) as raised:
                client.start("claude", "hello")
            assert "claude" in raised.value.message
            assert "/nowhere/claude" in raised.value.message
            backends = {b.id: b for b in client.backends()}
            assert not backends["claude"].available
            assert backends["demo"].available and backends["exec"].available
    finally:
        assert daemon.stop() == 0
