"""The main views, light and dark and on a phone-sized screen, saved as named screenshots
under artifacts/screenshots/ (for a person to look at), with what can be checked checked:
the two themes differ, and nothing overflows the phone's width."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Literal

import pytest
from playwright.sync_api import Page, ViewportSize, expect
from support import became, next_event

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.panels import MemberSpec, PanelConfig, Stance

DEADLINE = 120.0
PHONE: ViewportSize = {"width": 390, "height": 844}
SCHEMES: tuple[Literal["light"], Literal["dark"]] = ("light", "dark")
ECHO = "import sys\nfor line in sys.stdin:\n    print('echo:', line.strip(), flush=True)\n"
BACKGROUND = "getComputedStyle(document.body).backgroundColor"


def populate(
    client: Client, start_asker: Callable[[Client, str], p.SessionInfo]
) -> tuple[p.SessionInfo, p.PanelInfo, p.SessionInfo]:
    """Sessions under three tags (one shared), a finished demo conversation, a panel, and a
    session waiting for a person (an ACP agent asking permission)."""
    with client.subscribe(p.SESSION_TOPIC, p.PANEL_TOPIC) as events:
        talk = client.start("demo", "Plan the beta release", persona="pm", tag="release")
        client.start("demo", "What could break?", persona="qa", tag="release")
        client.start("exec", argv=[sys.executable, "-c", ECHO], tag="build")
        asking = start_asker(client, "build")
        next_event(events, became(asking.id, p.SessionStatus.WAITING_INPUT), DEADLINE)
        members = [
            MemberSpec(name="PM", persona="pm", backend="demo", stance=Stance.FOR),
            MemberSpec(name="QA", persona="qa", backend="demo", stance=Stance.AGAINST),
        ]
        panel = client.panel_create(
            PanelConfig(topic="Ship the beta on Friday?", members=members, max_rounds=1)
        )
        next_event(
            events,
            lambda e: isinstance(e, p.PanelEnded) and e.panel_id == panel.id,
            DEADLINE,
        )
    return talk, panel, asking


@pytest.mark.timeout(300)
def test_the_main_views_render_light_dark_and_on_a_phone(
    page: Page,
    client: Client,
    shoot: Callable[[Page, str], object],
    start_asker: Callable[[Client, str], p.SessionInfo],
) -> None:
    talk, panel, asking = populate(client, start_asker)
    expect(page.locator(f'[role="treeitem"][data-panel="{panel.id}"]').first).to_be_visible()
    waiting = page.locator(f'[role="treeitem"][data-session="{asking.id}"]')
    expect(waiting).to_have_attribute("data-status", "waiting_input")
    expect(page).to_have_title("(1) agentplex")
    backgrounds = {}
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        backgrounds[scheme] = page.evaluate(BACKGROUND)
        shoot(page, f"overview-{scheme}")
    page.locator(f'[data-testid="session-row"][data-session="{talk.id}"]').click()
    view = page.locator(f'[data-testid="transcript"][data-session="{talk.id}"]')
    expect(view.locator('[data-kind="result"]').first).to_be_visible()
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        shoot(page, f"transcript-{scheme}")
    page.locator(f'[role="treeitem"][data-panel="{panel.id}"]').first.click()
    expect(page.get_by_test_id("participation-chart")).to_be_visible()
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        shoot(page, f"panel-{scheme}")
    assert backgrounds["light"] != backgrounds["dark"], backgrounds

    page.set_viewport_size(PHONE)
    page.locator(f'[data-testid="session-row"][data-session="{talk.id}"]').click()
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        shoot(page, f"phone-{scheme}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
