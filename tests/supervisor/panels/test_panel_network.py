"""Threads, reactions, the reply network, cost and Gini of a real panel (the daemon as a
separate process, demo members), each checked against the message log on disk rather than
against the analytics code's own bookkeeping."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import DaemonProcess, next_event, ok, start_daemon

from agentplex import protocol as p
from agentplex.client import Client, SyncSubscription
from agentplex.protocol.panels import MemberSpec, PanelConfig, StopReason
from agentplex.supervisor.panels.analytics import gini

DEADLINE = 120.0
"""A panel of demo members on a loaded 2-core machine: generous, never slept away."""
NAMES = ("PM", "QA", "Spec")
TURN_COST = "0.0125"


def demo_panel(rounds: int) -> PanelConfig:
    members = [
        MemberSpec(name=name, persona=persona, backend="demo")
        for name, persona in zip(NAMES, ("pm", "qa", "specialist"), strict=True)
    ]
    return PanelConfig(topic="Ship the beta on Friday?", members=members, max_rounds=rounds)


def ended(panel_id: str) -> Callable[[p.Event], bool]:
    return lambda e: isinstance(e, p.PanelEnded) and e.panel_id == panel_id


def message_of(panel_id: str) -> Callable[[p.Event], bool]:
    return lambda e: (
        isinstance(e, p.PanelMessageEvent) and e.panel_id == panel_id and not e.updated
    )


def logged(daemon: DaemonProcess, panel_id: str) -> list[dict[str, Any]]:
    path = daemon.state_dir / "panels" / panel_id / "panel_messages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def turns(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that are turns: not the orchestrator's, not a cut reply."""
    return [m for m in log if m.get("type") != "system" and not m.get("interrupted")]


def report_json(daemon: DaemonProcess, panel_id: str) -> dict[str, Any]:
    """``panel report --json``, its analytics decoded."""
    reported = json.loads(ok(daemon, "panel", "report", panel_id, "--json"))
    analytics = reported["analytics"]
    return analytics if isinstance(analytics, dict) else json.loads(analytics)


def hold(client: Client, events: SyncSubscription, panel_id: str) -> None:
    """Pause the panel and wait out a turn in flight: its log then holds still."""
    client.panel_control(panel_id, "pause")
    speaking = client.panel_show(panel_id).panel.speaking
    if speaking is not None:
        next_event(
            events,
            lambda e: message_of(panel_id)(e)
            and isinstance(e, p.PanelMessageEvent)
            and e.message.participant == speaking,
            DEADLINE,
        )
    assert client.panel_show(panel_id).panel.speaking is None


def say(daemon: DaemonProcess, panel_id: str, text: str, *extra: str) -> dict[str, Any]:
    posted = json.loads(ok(daemon, "panel", "say", panel_id, text, "--json", *extra))
    return posted.get("message", posted)


def test_replies_thread_under_their_root_and_reactions_are_not_turns(
    daemon: DaemonProcess, client: Client
) -> None:
    with client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(demo_panel(rounds=50))
        first = next_event(events, message_of(info.id), DEADLINE)
        assert isinstance(first, p.PanelMessageEvent)
        hold(client, events, info.id)
        root = first.message
        reply = say(daemon, info.id, "What about the migration?", "--reply-to", root.id)
        deeper = say(daemon, info.id, "And its rollback?", "--reply-to", reply["id"])
        aside = say(daemon, info.id, "Unrelated: lunch?")
        before = client.panel_show(info.id)
        analytics_before = report_json(daemon, info.id)
        for emoji in ("+1", "eyes", "+1"):
            ok(daemon, "panel", "react", info.id, deeper["id"], emoji)
        ok(daemon, "panel", "react", info.id, root.id, "tada")
        after = client.panel_show(info.id)
        analytics_after = report_json(daemon, info.id)
        client.panel_control(info.id, "end")
        next_event(events, ended(info.id), DEADLINE)
    assert (reply["reply_to"], reply["thread_id"]) == (root.id, root.id)
    assert (deeper["reply_to"], deeper["thread_id"]) == (reply["id"], root.id)  # the root's
    assert aside.get("reply_to") is None and aside.get("thread_id") is None
    by_id = {m["id"]: m for m in logged(daemon, info.id)}
    assert by_id[deeper["id"]]["thread_id"] == root.id  # so on disk too
    # Reactions: no new message, no turn, no message counted; only the reactions tally.
    assert [m.id for m in after.messages] == [m.id for m in before.messages]
    assert [m.turn for m in after.messages] == [m.turn for m in before.messages]
    assert (after.panel.turn, after.panel.messages) == (before.panel.turn, before.panel.messages)
    shown = {m.id: m for m in after.messages}
    assert [r.emoji for r in shown[deeper["id"]].reactions] == ["+1", "eyes", "+1"]
    for key in ("messages", "words", "participants", "reply_network", "threads", "gini"):
        if key == "participants":
            strip = [
                {k: v for k, v in person.items() if k != "reactions_received"}
                for person in analytics_after[key]
            ]
            kept = [
                {k: v for k, v in person.items() if k != "reactions_received"}
                for person in analytics_before[key]
            ]
            assert strip == kept
        else:
            assert analytics_after.get(key) == analytics_before.get(key), key
    assert analytics_after["reactions"] == {"+1": 2, "eyes": 1, "tada": 1}
    received = {x["name"]: x.get("reactions_received", 0) for x in analytics_after["participants"]}
    assert received["human"] == 3 and received[root.participant] == 1


@pytest.fixture
def billed(short_tmp: Path) -> Iterator[DaemonProcess]:
    """A daemon whose demo members bill each turn (so per-member cost means something)."""
    d = start_daemon(short_tmp, "--grace", "2", env={"AGENTPLEX_DEMO_COST": TURN_COST})
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log_lines[-5:]


def test_the_reply_network_cost_and_gini_in_the_report_match_the_log(
    billed: DaemonProcess,
) -> None:
    daemon = billed
    with daemon.client() as client, client.subscribe(p.PANEL_TOPIC) as events:
        info = client.panel_create(demo_panel(rounds=2))
        said: list[p.PanelMessage] = []
        while len(said) < 2:  # two members have spoken: reply to each, and to a human
            event = next_event(events, message_of(info.id), DEADLINE)
            assert isinstance(event, p.PanelMessageEvent)
            said.append(event.message)
        hold(client, events, info.id)  # the humans post before the panel ends
        ann = say(daemon, info.id, "I disagree.", "--reply-to", said[0].id, "--as", "Ann")
        say(daemon, info.id, "So do I.", "--reply-to", ann["id"], "--as", "Bob")
        say(daemon, info.id, "Why?", "--reply-to", said[1].id, "--as", "Bob")
        client.panel_control(info.id, "resume")
        gone = next_event(events, ended(info.id), DEADLINE)
    assert isinstance(gone, p.PanelEnded) and gone.stop_reason is StopReason.MAX_ROUNDS
    log = logged(daemon, info.id)
    by_id = {m["id"]: m for m in log}
    edges: Counter[tuple[str, str]] = Counter()
    for m in turns(log):
        target = by_id.get(m["reply_to"]) if m.get("reply_to") else None
        if target is not None and target.get("type") != "system":
            edges[(m["participant"], target["participant"])] += 1
    reported = report_json(daemon, info.id)
    network = Counter({(e["source"], e["target"]): e["count"] for e in reported["reply_network"]})
    assert network == edges
    assert edges[("Ann", said[0].participant)] == 1 and edges[("Bob", "Ann")] == 1
    cost: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for m in log:
        if m.get("type") != "system" and m.get("usage"):
            cost[m["participant"]] += round(m["usage"].get("cost_usd", 0.0) * 1e9)
    for m in turns(log):
        words[m["participant"]] += len(m["text"].split())
    people = {x["name"]: x for x in reported["participants"]}
    assert set(people) == {*NAMES, "Ann", "Bob"}
    assert all(cost[name] >= 2 * 12_500_000 for name in NAMES)  # billed: 2 turns each
    for name, person in people.items():
        assert round(person.get("cost_usd", 0.0) * 1e9) == cost[name], name
        assert person.get("words", 0) == words[name], name
    assert reported["gini"] == gini([words[name] for name in people])
    assert 0 < reported["gini"] < 1  # humans said a few words, members many
    final = Path(daemon.state_dir / "panels" / info.id / "analytics" / "final_analytics.json")
    assert json.loads(final.read_text())["gini"] == reported["gini"]
