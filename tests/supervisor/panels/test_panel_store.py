"""The panel store writes at once and leaves its fsyncs to the daemon's Flusher thread, so a
slow disk never stalls the event loop; each file still reads back whole."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec

from agentplex.protocol.panels import PanelConfig, PanelMessage, PanelStatus
from agentplex.supervisor.durable import Flusher
from agentplex.supervisor.panels.store import PanelMetadata, PanelStore


def queued(flusher: Flusher) -> int:
    return flusher._receive.statistics().current_buffer_used


def test_writes_land_at_once_and_their_fsyncs_are_queued_for_the_flusher(tmp_path: Path) -> None:
    flusher = Flusher()
    store = PanelStore(tmp_path / "panels", flusher)
    metadata = PanelMetadata(id="p1", status=PanelStatus.ACTIVE, created_at=1.0)
    store.create(PanelConfig(topic="t"), metadata)
    store.save_metadata(msgspec.structs.replace(metadata, turn=3))
    message = PanelMessage(
        id="m1", panel_id="p1", participant="PM", text="hi", ts=1.0, turn=1, round=0
    )
    store.append_message(message)
    assert queued(flusher) == 2 + 2 + 2 + 1  # config, metadata twice (file and dir), the line
    loaded = store.load("p1")  # readable before any fsync: the page cache has it
    assert loaded.metadata.turn == 3 and loaded.messages == [message]
    assert not list((tmp_path / "panels" / "p1").glob(".*.tmp"))  # renamed, not left

    async def drain() -> None:
        flusher._send.close()  # no more to come: run syncs what is queued, then returns
        with anyio.fail_after(30):
            await flusher.run()

    anyio.run(drain)
    assert queued(flusher) == 0


def test_without_a_flusher_the_store_syncs_in_place(tmp_path: Path) -> None:
    store = PanelStore(tmp_path / "panels")
    metadata = PanelMetadata(id="p1", status=PanelStatus.PAUSED, created_at=1.0)
    store.create(PanelConfig(topic="t"), metadata)
    assert store.load("p1").metadata.status is PanelStatus.PAUSED
