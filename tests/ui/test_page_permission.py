"""A session waiting for a person, in a real browser: marked (not by colour alone), counted
in the title, and answered from the page with Allow, which reaches the agent via ``permit``."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect
from support import became, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client

DEADLINE = 60.0


def test_a_waiting_session_is_marked_and_allowed_from_the_page(
    page: Page, client: Client, start_asker: Callable[[Client, str], p.SessionInfo]
) -> None:
    expect(page).to_have_title("agentplex")
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = start_asker(client, "ask")
        next_event(events, became(info.id, p.SessionStatus.WAITING_INPUT), DEADLINE)

        node = page.locator(f'[role="treeitem"][data-session="{info.id}"]')
        expect(node).to_have_attribute("data-status", "waiting_input")
        expect(node).to_have_class(re.compile(r"\bwaiting\b"))
        expect(node).to_contain_text("needs you")
        expect(page).to_have_title("(1) agentplex")

        page.locator(f'[data-testid="session-row"][data-session="{info.id}"]').click()
        transcript = page.locator(f'[data-testid="transcript"][data-session="{info.id}"]')
        asked = transcript.locator('[data-kind="permission_request"]')
        expect(asked).to_contain_text("touch made.txt")
        asked.locator('[data-action="allow"]').click()

        said = next_event(events, is_chunk(info.id, p.ChunkKind.TEXT), DEADLINE)
        next_event(events, became(info.id, p.SessionStatus.IDLE), DEADLINE)
    assert isinstance(said, p.Chunk) and said.text == "the person allowed"
    expect(transcript.locator('[data-kind="text"] .chunk-text')).to_contain_text(
        "the person allowed"
    )
    expect(node).to_have_attribute("data-status", "idle")
    expect(node).not_to_have_class(re.compile(r"\bwaiting\b"))
    expect(page).to_have_title("agentplex")
