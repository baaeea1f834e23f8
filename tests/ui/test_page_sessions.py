"""The tree and the session list in a real browser, against a real daemon: indicators,
persona icons and count badges; status and pulse following ``session.status_changed``;
switching and terminating from the page."""

from __future__ import annotations

import re
import sys

from playwright.sync_api import Locator, Page, expect
from support import became, next_event

from agentplex import protocol as p
from agentplex.client import Client

ECHO = """\
import sys
for line in sys.stdin:
    print("echo:", line.strip(), flush=True)
    if line.strip() == "quit":
        break
"""
"""An exec agent that says back each message and ends on ``quit``."""
PULSE = re.compile(r"\bpulse\b")
ANIMATION = "e => getComputedStyle(e).animationName"
DEADLINE = 60.0


def echo(client: Client, tag: str | None = None) -> p.SessionInfo:
    return client.start("exec", argv=[sys.executable, "-c", ECHO], tag=tag)


def tree(page: Page) -> Locator:
    return page.get_by_role("tree", name="Sessions by tag")


def node(page: Page, session_id: str) -> Locator:
    return tree(page).locator(f'[role="treeitem"][data-session="{session_id}"]')


def row(page: Page, session_id: str) -> Locator:
    return page.locator(f'[data-testid="session-row"][data-session="{session_id}"]')


def test_indicators_persona_icons_and_count_badges_appear(page: Page, client: Client) -> None:
    qa = client.start("demo", "hello", persona="qa", tag="release")
    pm = client.start("demo", "hello", persona="pm", tag="release")
    lone = echo(client, tag="solo")

    release = tree(page).locator('[role="treeitem"][data-tag="release"]')
    expect(release.locator(".count-badge").first).to_have_text("2")
    solo = tree(page).locator('[role="treeitem"][data-tag="solo"]')
    expect(solo).to_be_visible()
    expect(solo.locator(".count-badge")).to_be_hidden()  # one session: no badge
    expect(node(page, qa.id).locator(".persona-icon")).to_contain_text("\N{TEST TUBE}")
    expect(node(page, pm.id).locator(".persona-icon")).to_contain_text("\N{CLIPBOARD}")
    expect(node(page, lone.id).locator(".persona-icon")).not_to_be_empty()  # the exec default
    expect(node(page, lone.id)).to_have_attribute("data-status", "running")
    expect(node(page, lone.id).locator(".status-text")).to_contain_text("running")
    for info in (qa, pm, lone):
        expect(row(page, info.id)).to_be_visible()


def test_the_status_and_pulse_follow_status_changed_and_reduced_motion_stops_it(
    page: Page, client: Client
) -> None:
    with client.subscribe(p.SESSION_TOPIC) as events:
        info = echo(client, tag="pulse")
        next_event(events, became(info.id, p.SessionStatus.RUNNING), DEADLINE)
        icon = node(page, info.id).locator(".persona-icon")
        expect(node(page, info.id)).to_have_attribute("data-status", "running")
        expect(icon).to_have_class(PULSE)
        assert icon.evaluate(ANIMATION) != "none"
        page.emulate_media(reduced_motion="reduce")  # status stays, motion stops
        assert icon.evaluate(ANIMATION) == "none"
        expect(icon).to_have_class(PULSE)

        client.send("quit", info.id)
        next_event(events, became(info.id, p.SessionStatus.EXITED), DEADLINE)
    expect(node(page, info.id)).to_have_attribute("data-status", "exited")
    expect(node(page, info.id).locator(".status-text")).to_contain_text("exited")
    expect(icon).not_to_have_class(PULSE)


def test_switching_in_the_page_changes_the_daemons_active_session(
    page: Page, client: Client
) -> None:
    first, second = echo(client), echo(client)
    assert client.list().active == second.id  # the newest started
    expect(row(page, second.id)).to_have_attribute("aria-current", "true")

    with client.subscribe(p.SESSION_TOPIC) as events:
        row(page, first.id).locator('[data-action="switch"]').click()
        next_event(
            events,
            lambda e: isinstance(e, p.ActiveChanged) and e.session_id == first.id,
            DEADLINE,
        )
    assert client.list().active == first.id
    expect(row(page, first.id)).to_have_attribute("aria-current", "true")
    expect(row(page, second.id)).not_to_have_attribute("aria-current", "true")


def test_terminate_in_the_page_ends_the_session_and_its_indicator(
    page: Page, client: Client
) -> None:
    info = echo(client, tag="doomed")
    expect(node(page, info.id).locator(".persona-icon")).to_have_class(PULSE)

    with client.subscribe(p.SESSION_TOPIC) as events:
        row(page, info.id).locator('[data-action="terminate"]').click()
        next_event(events, became(info.id, p.SessionStatus.TERMINATED), DEADLINE)
    assert client.inspect(info.id).status is p.SessionStatus.TERMINATED
    expect(node(page, info.id)).to_have_attribute("data-status", "terminated")
    expect(node(page, info.id).locator(".persona-icon")).not_to_have_class(PULSE)
    expect(row(page, info.id).locator('[data-action="terminate"]')).to_be_disabled()


MANY = 120
"""Past ui/static/windowed.js's WINDOW_FROM (60): the list and the tree render a window."""


def test_a_long_list_renders_only_the_rows_in_view_and_any_row_on_demand(
    page: Page, client: Client
) -> None:
    infos = [client.start("exec", argv=["sleep", "600"], tag="many") for _ in range(MANY)]
    oldest = infos[0]  # the list is newest first: the oldest is its last row
    listing = page.get_by_test_id("session-list")
    expect(listing).to_have_attribute("data-total", str(MANY))
    expect(tree(page).locator('[data-tag="many"] .count-badge')).to_have_text(str(MANY))
    rows = page.get_by_test_id("session-row")
    expect(rows.first).to_be_visible()
    rendered = rows.count()
    assert 0 < rendered < MANY, f"{rendered} rows rendered of {MANY}"
    nodes = tree(page).locator('[role="treeitem"][data-session]').count()
    assert 0 < nodes < MANY, f"{nodes} tree nodes rendered of {MANY}"
    assert rows.first.get_attribute("aria-setsize") == str(MANY)
    expect(row(page, oldest.id)).to_have_count(0)

    # scrolled to: the list's end renders the last row
    page.locator(".middle").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    expect(row(page, oldest.id)).to_be_visible()
    assert row(page, oldest.id).get_attribute("aria-posinset") == str(MANY)
    page.locator(".middle").evaluate("e => { e.scrollTop = 0; }")
    expect(row(page, oldest.id)).to_have_count(0)

    # `k` with nothing selected goes to the last session: rendered, selected, focused
    page.locator("body").press("k")
    expect(row(page, oldest.id)).to_have_attribute("data-selected", "true")
    expect(row(page, oldest.id)).to_be_focused()

    # filtered to: a row far down the list renders
    page.locator(".middle").evaluate("e => { e.scrollTop = 0; }")
    page.get_by_test_id("filter").fill(infos[1].id)
    expect(listing).to_have_attribute("data-total", "1")
    expect(row(page, infos[1].id)).to_be_visible()
    expect(node(page, infos[1].id)).to_be_visible()
