"""The demo backend keeps one conversation across turns through its resume id."""

from __future__ import annotations

from pathlib import Path

from support import became, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client


def test_a_demo_session_continued_with_three_sends_keeps_one_conversation(client: Client) -> None:
    prompts = ["first question", "second question", "third question", "fourth question"]
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("demo", prompts[0])
        results = [next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))]
        resume_ids = {client.inspect(info.id).cli_session_id}
        for prompt in prompts[1:]:
            client.send(prompt, info.id)
            results.append(next_event(events, is_chunk(info.id, p.ChunkKind.RESULT)))
            resume_ids.add(client.inspect(info.id).cli_session_id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))

    assert len(resume_ids) == 1 and None not in resume_ids
    last = results[-1]
    assert isinstance(last, p.Chunk)
    assert "Turn 4" in last.text
    assert "fourth question" in last.text and "third question" in last.text
    final = client.inspect(info.id)
    assert final.turns == 4
    assert final.status is p.SessionStatus.IDLE
    assert final.usage.output_tokens > 0


def test_a_send_during_a_running_turn_is_queued_and_runs_next(client: Client) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("demo", "SLOW please take your time")
        next_event(events, is_chunk(info.id, p.ChunkKind.TEXT))
        sent = client.send("queued follow-up", info.id)
        assert sent.queued == 1
        next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
        second = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
    assert "queued follow-up" in second.text  # type: ignore[union-attr]


def test_interrupt_stops_the_turn_and_the_next_send_resumes_the_conversation(
    client: Client,
) -> None:
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start("demo", "SLOW tell me everything")
        next_event(events, is_chunk(info.id, p.ChunkKind.TEXT))
        client.interrupt(info.id)
        next_event(events, became(info.id, p.SessionStatus.IDLE))
        client.send("and now briefly", info.id)
        result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
    assert "Turn 2" in result.text  # type: ignore[union-attr]
    assert "SLOW tell me everything" in result.text  # type: ignore[union-attr]


def test_a_turn_that_outlives_the_turn_timeout_is_stopped_and_the_session_goes_on(
    short_tmp: Path,
) -> None:
    daemon = start_daemon(short_tmp, "--turn-timeout", "1", "--grace", "0.5")
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
            info = client.start("demo", "SLOW this will take too long")
            error = next_event(events, is_chunk(info.id, p.ChunkKind.ERROR))
            assert "longer than 1 s" in error.text  # type: ignore[union-attr]
            next_event(events, became(info.id, p.SessionStatus.IDLE))
            client.send("quick one", info.id)
            result = next_event(events, is_chunk(info.id, p.ChunkKind.RESULT))
            assert "quick one" in result.text  # type: ignore[union-attr]
    finally:
        assert daemon.stop() == 0
