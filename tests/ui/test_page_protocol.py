"""The page's frames: an event is relayed as the daemon published it, byte for byte inside
the frame the page protocol defines."""

from __future__ import annotations

import json

import msgspec

from agentplex import protocol as p
from agentplex.ui import page_protocol


def test_an_event_frame_embeds_the_published_json_as_the_frame_struct_would() -> None:
    events: list[p.Event] = [
        p.Chunk(kind=p.ChunkKind.TEXT, text='say "é"\n', session_id="ab12", seq=7, turn=1),
        p.Heartbeat(pid=42, ts=1.5, sessions=3),
    ]
    for event in events:
        topic, payload = p.topic_of(event), p.encode(event)
        frame = page_protocol.event_frame(topic, payload)
        struct = page_protocol.EventFrame(topic=topic.decode(), event=msgspec.Raw(payload))
        assert frame == msgspec.json.encode(struct).decode()
        assert json.loads(frame) == {
            "op": "event",
            "topic": topic.decode(),
            "event": json.loads(payload),
        }
