"""Many sessions at once: chunks stay per session, ordered, gap-free, and all logged."""

from __future__ import annotations

import sys

from support import DaemonProcess, next_event

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.transcripts import read_chunks

COUNTER = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    for i in range(int(line)):\n"
    "        print(f'line {i}', flush=True)\n"
    "    print('done', flush=True)\n"
)


def test_twenty_sessions_stream_at_once_each_subscriber_sees_its_own_chunks_in_order(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as everything:
        execs = [
            client.start("exec", argv=[sys.executable, "-c", COUNTER], tag="many")
            for _ in range(10)
        ]
        target = execs[0]
        with client.subscribe(p.chunk_topic(target.id)) as only_target:
            demos = [client.start("demo", f"hello number {i}", tag="many") for i in range(10)]
            for info in execs:
                client.send("300", info.id)
            published = _collect_until_all_done(
                everything, {s.id for s in execs}, {s.id for s in demos}
            )
            mine = _drain_one_session(only_target, target.id)

    assert {c.session_id for c in mine} == {target.id}
    assert [c.seq for c in mine] == list(range(1, len(mine) + 1))
    assert [c.text for c in mine] == [f"line {i}" for i in range(300)] + ["done"]
    for info in execs + demos:
        chunks = published[info.id]
        assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1)), info.id
        logged = list(read_chunks(info.transcript))
        assert logged == chunks


def _collect_until_all_done(
    events: object, exec_ids: set[str], demo_ids: set[str]
) -> dict[str, list[p.Chunk]]:
    published: dict[str, list[p.Chunk]] = {sid: [] for sid in exec_ids | demo_ids}
    waiting = set(exec_ids | demo_ids)

    def record(event: p.Event) -> bool:
        assert isinstance(event, p.Chunk)
        published[event.session_id].append(event)
        finished = (event.session_id in exec_ids and event.text == "done") or (
            event.session_id in demo_ids and event.kind is p.ChunkKind.RESULT
        )
        if finished:
            waiting.discard(event.session_id)
        return not waiting

    next_event(events, record, timeout=60)  # type: ignore[arg-type]
    return published


def _drain_one_session(events: object, session_id: str) -> list[p.Chunk]:
    mine: list[p.Chunk] = []

    def record(event: p.Event) -> bool:
        assert isinstance(event, p.Chunk)
        mine.append(event)
        return event.text == "done"

    next_event(events, record, timeout=30)  # type: ignore[arg-type]
    return mine
