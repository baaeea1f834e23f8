"""A session waiting for a person, in a real browser: marked (not by colour alone), counted
in the title, and answered from the page with Allow, which reaches the agent via ``permit``."""

from __future__ import annotations

import re
import sys

from playwright.sync_api import Page, expect
from support import became, is_chunk, next_event

from agentplex import protocol as p
from agentplex.client import Client

ASKER = """\
import json, sys

def send(message):
    sys.stdout.write(json.dumps(dict(message, jsonrpc="2.0")) + "\\n")
    sys.stdout.flush()

prompt = None
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "initialize":
        send({"id": m["id"], "result": {"protocolVersion": 1, "agentInfo": {"name": "asker"}}})
    elif method == "session/new":
        send({"id": m["id"], "result": {"sessionId": "ask-1"}})
    elif method == "session/prompt":
        prompt = m["id"]
        send({"id": "perm-1", "method": "session/request_permission", "params": {
            "sessionId": "ask-1",
            "toolCall": {"toolCallId": "t1", "title": "touch made.txt", "kind": "edit"},
            "options": [{"optionId": "yes", "name": "Allow", "kind": "allow_once"},
                        {"optionId": "no", "name": "Deny", "kind": "reject_once"}]}})
    elif method is None and m.get("id") == "perm-1":
        chose = m["result"]["outcome"].get("optionId")
        said = "the person allowed" if chose == "yes" else "the person denied"
        send({"method": "session/update", "params": {"sessionId": "ask-1", "update": {
            "sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": said}}}})
        send({"id": prompt, "result": {"stopReason": "end_turn"}})
"""
"""A minimal ACP agent (the `acp` backend's protocol): every prompt asks permission for
one tool call, then says which option the client chose and ends the turn."""
DEADLINE = 60.0


def test_a_waiting_session_is_marked_and_allowed_from_the_page(page: Page, client: Client) -> None:
    expect(page).to_have_title("agentplex")
    with client.subscribe(p.CHUNK_TOPIC, p.SESSION_TOPIC) as events:
        info = client.start(
            "acp", "go", argv=[sys.executable, "-c", ASKER], permission_policy="ask", tag="ask"
        )
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
