"""A demo panel in a real browser: its members, threaded messages, a decision with its
positions and consensus level, the participation chart; and `panel say` from the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from support import next_event

from agentplex import protocol as p
from agentplex.client import Client
from agentplex.protocol.panels import MemberSpec, PanelConfig, Stance

DEADLINE = 120.0
"""Demo members on a loaded 2-core machine take their turns in real processes."""
PROPOSAL = "Ship the beta on Friday behind a feature flag"


def demo_panel(client: Client) -> p.PanelInfo:
    seats = (
        ("PM", "pm", Stance.FOR),
        ("QA", "qa", Stance.AGAINST),
        ("Spec", "specialist", Stance.FOR),
    )
    members = [
        MemberSpec(name=name, persona=persona, backend="demo", stance=stance)
        for name, persona, stance in seats
    ]
    config = PanelConfig(topic="Ship the beta on Friday?", members=members, max_rounds=50)
    return client.panel_create(config)


@pytest.mark.timeout(300)
def test_a_demo_panel_shows_its_messages_decision_and_chart(page: Page, client: Client) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = demo_panel(client)
        next_event(
            events,
            lambda e: isinstance(e, p.PanelMessageEvent) and e.panel_id == info.id,
            DEADLINE,
        )
        decided = client.panel_decide(info.id, PROPOSAL, timeout=DEADLINE).decision

    page.locator(f'[role="treeitem"][data-panel="{info.id}"]').first.click()
    view = page.locator(f'[data-testid="panel-view"][data-panel="{info.id}"]')
    expect(view.get_by_test_id("panel-member")).to_have_count(3)
    for name in ("PM", "QA", "Spec"):
        expect(view.get_by_test_id("panel-member").filter(has_text=name)).to_have_count(1)
    expect(view.get_by_test_id("panel-message").first).to_be_visible()
    decision = view.get_by_test_id("panel-decision")
    expect(decision).to_contain_text(PROPOSAL)
    expect(decision).to_contain_text(re.compile(r"simple[ _]majority", re.IGNORECASE))
    for vote in decided.votes:
        expect(decision).to_contain_text(vote.participant)
    chart = view.get_by_test_id("participation-chart")
    expect(chart).to_be_visible()
    assert chart.evaluate("e => e.tagName.toLowerCase() === 'svg' || !!e.querySelector('svg')")
    expect(view.get_by_test_id("reply-network")).to_be_visible()

    shown = client.panel_show(info.id)
    assert shown.total >= 1
    first = shown.messages[0]
    expect(
        view.locator(f'[data-testid="panel-message"][data-message="{first.id}"]')
    ).to_be_visible()

    view.get_by_test_id("panel-say").fill("What about the migration?")
    with client.subscribe(p.PANEL_TOPIC) as events:
        view.locator('[data-action="panel-say"]').click()
        said = next_event(
            events,
            lambda e: (
                isinstance(e, p.PanelMessageEvent)
                and e.panel_id == info.id
                and e.message.text == "What about the migration?"
            ),
            DEADLINE,
        )
    assert isinstance(said, p.PanelMessageEvent)
    expect(
        view.locator(f'[data-testid="panel-message"][data-message="{said.message.id}"]')
    ).to_contain_text("What about the migration?")
    client.panel_control(info.id, "end")


def two_member_panel(client: Client, tag: str | None) -> p.PanelInfo:
    members = [
        MemberSpec(name="PM", persona="pm", backend="demo", stance=Stance.FOR),
        MemberSpec(name="QA", persona="qa", backend="demo", stance=Stance.AGAINST),
    ]
    config = PanelConfig(topic=f"Tagged {tag}?", members=members, max_rounds=1, tag=tag)
    return client.panel_create(config)


@pytest.mark.timeout(300)
def test_a_panel_sits_under_its_tag_with_its_members_nested_under_it(
    page: Page, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        tagged = two_member_panel(client, "review")
        untagged = two_member_panel(client, None)
        for panel in (tagged, untagged):
            next_event(
                events,
                lambda e, panel=panel: isinstance(e, p.PanelEnded) and e.panel_id == panel.id,
                DEADLINE,
            )
    tree = page.get_by_role("tree", name="Sessions by tag")
    # A panel without a tag is where the daemon puts its members: under "panels".
    for tag, panel in (("review", tagged), ("panels", untagged)):
        members = [m.session_id for m in client.panel_show(panel.id).panel.members]
        assert len(members) == 2 and all(members), members
        under = tree.locator(f'[role="treeitem"][data-tag="{tag}"]')
        node = under.locator(f'[role="treeitem"][data-panel="{panel.id}"]')
        expect(node).to_be_visible()
        expect(under.locator(".count-badge").first).to_have_text("3")  # the panel and two
        group = under.locator(f'[role="group"][data-owner="{panel.id}"]')
        expect(node).to_have_attribute("aria-owns", str(group.get_attribute("id")))
        for sid in members:
            # each member once in the tree, in its panel's group, not loose under the tag
            expect(tree.locator(f'[role="treeitem"][data-session="{sid}"]')).to_have_count(1)
            expect(group.locator(f'[role="treeitem"][data-session="{sid}"]')).to_be_visible()
    expect(tree.locator('[data-tag="(untagged)"] [data-panel]')).to_have_count(0)
    # Folding the panel hides its members; they stay out of the tag's loose sessions.
    node = tree.locator(f'[role="treeitem"][data-panel="{tagged.id}"]')
    node.locator(".fold").click()
    expect(node).to_have_attribute("aria-expanded", "false")
    expect(tree.locator('[data-tag="review"] [data-session]')).to_have_count(0)
