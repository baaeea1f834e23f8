"""What the browser sees of the dashboard's guards: no page without the token's cookie,
an HttpOnly SameSite=Strict cookie, and no WebSocket for a page of another origin even
when the browser attaches that cookie (same site: another port of 127.0.0.1)."""

from __future__ import annotations

import socket

from playwright.sync_api import Browser, Page
from ui_support import UiProcess

OPEN_WS = """url => new Promise(done => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); done("open"); };
    ws.onclose = () => done("refused");
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_page_without_the_cookie_is_401_in_the_browser(browser: Browser, ui: UiProcess) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        for path in ("/", "/static/app.js"):
            response = page.goto(f"http://127.0.0.1:{ui.port}{path}")
            assert response is not None and response.status == 401, path
        assert context.cookies() == []
    finally:
        context.close()


def test_the_token_becomes_an_httponly_strict_cookie(page: Page) -> None:
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "agentplex_ui",
        True,
        "Strict",
    )
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach


def test_a_websocket_from_another_origin_is_refused_though_it_carries_the_cookie(
    page: Page, ui: UiProcess
) -> None:
    ws_url = f"ws://127.0.0.1:{ui.port}/ws"
    assert page.evaluate(OPEN_WS, ws_url) == "open"  # the dashboard's own origin may

    evil = f"http://127.0.0.1:{free_port()}/evil"
    other = page.context.new_page()
    other.route(evil, lambda route: route.fulfill(content_type="text/html", body="<p>evil</p>"))
    other.goto(evil)
    assert other.evaluate(OPEN_WS, ws_url) == "refused"
