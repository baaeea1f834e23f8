"""Browser fixtures: Debian's Chromium driven by Playwright, a page open on a real
``agentplex ui`` process bridging a real daemon; a screenshot of every failure.

Chromium is launched from ``/usr/bin/chromium`` (``.ci/run`` installs it with apt; the
machine has no internet, so never ``playwright install``), with its background services
off: without those flags it keeps trying to reach Google and logs the failures.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support import DaemonProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright
    from ui_support import UiProcess

    from agentplex import protocol as p
    from agentplex.client import Client

REPO = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",  # we run as root in CI; the sandbox refuses root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
"""How long a DOM condition may take: a loaded 2-core machine, generous on purpose."""


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does, with apt)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'"
    )
    with sync_api.sync_playwright() as pw:
        pw.selectors.set_test_id_attribute("data-testid")
        sync_api.expect.set_options(timeout=WAIT_MS)
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    for stale in SCREENSHOTS.glob("failed-*.png"):  # an earlier run's failures mislead
        stale.unlink()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield browser
    browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures know whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


def shoot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def ui(daemon: DaemonProcess) -> Iterator[UiProcess]:
    """``agentplex ui`` on a free port, a client of ``daemon``; stopped after the test."""
    import ui_support

    process = ui_support.start_ui(daemon)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def restart_ui(ui: UiProcess, page: Page, daemon: DaemonProcess) -> Iterator[Callable[[], None]]:
    """A function that stops ``ui`` and starts a new ``agentplex ui`` on the same port,
    leaving ``page`` open: its WebSocket reconnects by itself, with the cookie it has (the
    new process keeps the token, from the state dir)."""
    import ui_support

    restarted: list[UiProcess] = []

    def restart() -> None:
        (restarted[-1] if restarted else ui).stop()
        again = ui_support.start_ui(daemon, port=ui.port)
        assert again.token == ui.token, "a restarted dashboard keeps its token"
        restarted.append(again)

    yield restart
    for process in restarted[-1:]:
        process.stop()


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    context = browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    return context


def open_dashboard(context: BrowserContext, url: str) -> Page:
    """A page on the dashboard, logged in by the token URL (the cookie it sets), live."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(url)
    assert "token=" not in page.url, "the token URL redirects to the page without it"
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    return page


@pytest.fixture
def page(browser: Browser, ui: UiProcess, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The dashboard in a fresh browser context, connected; screenshot saved if the test fails
    (or if the page never connected)."""
    context = new_context(browser)
    name = "failed-" + re.sub(r"[^\w.-]+", "_", request.node.name)
    try:
        try:
            page = open_dashboard(context, ui.url)
        except Exception:
            for opened in context.pages:
                shoot(opened, name)
            raise
        page.on("dialog", lambda dialog: dialog.accept())  # "terminate this session?" and such
        yield page
        if failed(request):
            shoot(page, name)
    finally:
        context.close()


@pytest.fixture(name="shoot")
def shoot_fixture() -> Callable[[Page, str], Path]:
    """Save a named screenshot under artifacts/screenshots/ (see :func:`shoot`)."""
    return shoot


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


@pytest.fixture(name="start_asker")
def start_asker_fixture() -> Callable[[Client, str], p.SessionInfo]:
    """A function starting, under a tag, an ACP agent whose every prompt asks permission
    (with ``permission_policy="ask"``: the session goes ``waiting_input``)."""

    def start(client: Client, tag: str) -> p.SessionInfo:
        argv = [sys.executable, "-c", ASKER]
        return client.start("acp", "go", argv=argv, permission_policy="ask", tag=tag)

    return start
