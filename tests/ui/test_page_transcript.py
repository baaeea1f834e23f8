"""The transcript view in a real browser: text shown as it arrives, and after the UI
process and then the daemon are restarted mid-stream, the page holds exactly the chunks on
disk (no gap, no duplicate), caught up by seq from ``replay``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from support import DaemonProcess, is_chunk, next_event, start_daemon

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.client.transcripts import read_chunks

ECHO = """\
import sys
for line in sys.stdin:
    print("echo:", line.strip(), flush=True)
"""
TICKER = """\
import sys, time
for i in range(1, 100_000):
    print(f"tick {i:06d}", flush=True)
    time.sleep(0.02)
"""
"""About 50 lines a second, until the daemon that runs it stops."""
DEADLINE = 60.0
DOM_CHUNKS = """els => els.map(e => [
    Number(e.dataset.seq), e.dataset.kind, e.querySelector('.chunk-text')?.textContent ?? null
])"""


def transcript(page: Page, session_id: str) -> Locator:
    return page.locator(f'[data-testid="transcript"][data-session="{session_id}"]')


def open_session(page: Page, session_id: str) -> Locator:
    """Open a session's transcript from the session list; returns the transcript view."""
    page.locator(f'[data-testid="session-row"][data-session="{session_id}"]').click()
    view = transcript(page, session_id)
    expect(view).to_have_attribute("role", "log")
    return view


def dom_chunks(page: Page, session_id: str) -> list[tuple[int, str, str | None]]:
    rows: list[Any] = transcript(page, session_id).locator("[data-seq]").evaluate_all(DOM_CHUNKS)
    return [(int(seq), str(kind), text) for seq, kind, text in rows]


def wait_last_seq(page: Page, session_id: str, seq: int) -> None:
    """Until the transcript's highest data-seq is ``seq``."""
    page.wait_for_function(
        """([sid, seq]) => {
            const view = document.querySelector(
                `[data-testid="transcript"][data-session="${sid}"]`);
            const seqs = view ? [...view.querySelectorAll("[data-seq]")]
                .map(e => Number(e.dataset.seq)) : [];
            return seqs.length > 0 && Math.max(...seqs) === seq;
        }""",
        arg=[session_id, seq],
        timeout=DEADLINE * 1000,
    )


def test_streamed_text_appears_as_it_arrives(page: Page, client: Client) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", ECHO], tag="stream")
        view = open_session(page, info.id)
        texts = view.locator(".chunk-text")
        for word in ("alpha", "beta", "gamma"):
            client.send(word, info.id)
            next_event(events, is_chunk(info.id, text=f"echo: {word}"), DEADLINE)
            # on screen before the agent has been given the next word
            expect(texts.filter(has_text=f"echo: {word}")).to_have_count(1)
    assert [text for _, _, text in dom_chunks(page, info.id)][-3:] == [
        "echo: alpha",
        "echo: beta",
        "echo: gamma",
    ]


@pytest.mark.timeout(300)
def test_after_the_ui_then_the_daemon_restart_mid_stream_the_page_equals_the_disk(
    page: Page,
    client: Client,
    daemon: DaemonProcess,
    short_tmp: Path,
    restart_ui: Callable[[], None],
) -> None:
    with client.subscribe(p.CHUNK_TOPIC) as events:
        info = client.start("exec", argv=[sys.executable, "-c", TICKER], tag="restarts")
        next_event(events, is_chunk(info.id, text="tick 000010"), DEADLINE)
    open_session(page, info.id)
    opened_at = client.inspect(info.id).chunks
    wait_last_seq_at_least(page, info.id, opened_at + 20)

    restart_ui()  # the ticker goes on meanwhile: the page must catch up by seq
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    wait_last_seq_at_least(page, info.id, client.inspect(info.id).chunks + 20)

    client.close()
    assert daemon.stop() == 0  # the ticker dies with it, mid-stream
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "daemon-down")
    again = start_daemon(short_tmp, "--grace", "2")
    try:
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        with again.client() as fresh:
            last = fresh.inspect(info.id)
            assert last.status is not p.SessionStatus.RUNNING
            wait_last_seq(page, info.id, last.chunks)
            on_page = dom_chunks(page, info.id)
            on_disk = {c.seq: c for c in read_chunks(last.transcript)}
    finally:
        assert again.stop() == 0

    seqs = [seq for seq, _, _ in on_page]
    assert seqs == list(range(seqs[0], last.chunks + 1)), "no gap, no duplicate, in order"
    assert seqs[0] <= opened_at, "everything since the session was opened is still shown"
    assert max(on_disk) == last.chunks
    for seq, kind, text in on_page:
        assert (kind, text) == (on_disk[seq].kind.value, on_disk[seq].text), seq


def wait_last_seq_at_least(page: Page, session_id: str, seq: int) -> None:
    page.wait_for_function(
        """([sid, seq]) => {
            const view = document.querySelector(
                `[data-testid="transcript"][data-session="${sid}"]`);
            return view !== null && [...view.querySelectorAll("[data-seq]")]
                .some(e => Number(e.dataset.seq) >= seq);
        }""",
        arg=[session_id, seq],
        timeout=DEADLINE * 1000,
    )
