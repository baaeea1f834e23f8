"""The dashboard server, as a real ``agentplex ui`` process bridging a real daemon, seen
the way a browser sees it (HTTP requests with chosen headers, the page's WebSocket) but
without one: its guards (token, cookie, Host, Origin, CSP), the bridge (hello, requests,
events, bad input), the daemon leaving and coming back, and a clean stop."""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import DaemonProcess, start_daemon
from ui_support import UiProcess, running_ui, start_ui

ws_client = pytest.importorskip(
    "websockets.sync.client", reason="websockets is missing: pip install -e '.[test]'"
)
ws_errors = pytest.importorskip("websockets.exceptions", reason="websockets is missing")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEADLINE = 60.0
"""Seconds a frame may take to come: a loaded 2-core machine, generous on purpose."""

Frame = dict[str, Any]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def get(ui: UiProcess, path: str, headers: dict[str, str] | None = None) -> Response:
    """GET ``path``; ``Host`` is 127.0.0.1:PORT unless ``headers`` says otherwise."""
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=DEADLINE)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def cookie(ui: UiProcess) -> dict[str, str]:
    """The header a browser sends once the token URL set the cookie."""
    return {"Cookie": f"agentplex_ui={ui.token}"}


def own_origin(ui: UiProcess) -> str:
    return f"http://127.0.0.1:{ui.port}"


@contextmanager
def page_socket(
    ui: UiProcess, *, origin: str | None = "own", with_cookie: bool = True, stalled: bool = False
) -> Iterator[PageSocket]:
    """The page's WebSocket (``origin`` "own": the server's; None: no Origin header).

    ``stalled``: a page that reads slowly holds the server back as early as it can: it
    reads one frame ahead of ``recv()``, keeps a small TCP window and takes frames
    uncompressed (repeated test lines would compress a hundredfold).
    """
    headers = cookie(ui) if with_cookie else {}
    sock = socket.socket()
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # no autotuning
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", ui.port))
    with ws_client.connect(
        f"ws://127.0.0.1:{ui.port}/ws",
        sock=sock,
        origin=own_origin(ui) if origin == "own" else origin,
        additional_headers=headers,
        open_timeout=DEADLINE,
        max_size=None,
        max_queue=1 if stalled else 16,
        compression=None if stalled else "deflate",
        ping_interval=None,  # a stalled test page must not time out its own pings
    ) as ws:
        yield PageSocket(ws)


class PageSocket:
    """Frames in and out as the page sees them. Frames that come while a reply is awaited
    are kept for :meth:`next` (an event may beat the reply to the request that caused it)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._held: collections.deque[Frame] = collections.deque()

    def next(self, match: Callable[[Frame], bool], timeout: float = DEADLINE) -> Frame:
        """The next frame ``match`` accepts (others are skipped), within ``timeout``."""
        while self._held:
            frame = self._held.popleft()
            if match(frame):
                return frame
        return self._receive(match, timeout, hold=False)

    def _receive(self, match: Callable[[Frame], bool], timeout: float, *, hold: bool) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s")
            frame: Frame = json.loads(self.ws.recv(timeout=remaining))
            if match(frame):
                return frame
            if hold:
                self._held.append(frame)

    def request(self, request: dict[str, Any]) -> Frame:
        """Send a wire request; return the reply frame with its id."""
        return self.reply(self.send(request))

    def send(self, request: dict[str, Any]) -> int:
        """Send a wire request; returns its id."""
        page_id = next(self._ids)
        self.ws.send(json.dumps({"op": "request", "id": page_id, "request": request}))
        return page_id

    def reply(self, page_id: int | None) -> Frame:
        """The reply with ``page_id``; the frames before it are held for :meth:`next`."""
        for frame in list(self._held):
            if frame["op"] == "reply" and frame["id"] == page_id:
                self._held.remove(frame)
                return frame
        return self._receive(
            lambda f: f["op"] == "reply" and f["id"] == page_id, DEADLINE, hold=True
        )


def op(name: str, **fields: Any) -> Callable[[Frame], bool]:
    """Match frames of ``op`` ``name`` whose fields equal ``fields``."""
    return lambda f: f["op"] == name and all(f.get(k) == v for k, v in fields.items())


@pytest.fixture
def ui(daemon: DaemonProcess) -> Iterator[UiProcess]:
    with running_ui(daemon) as process:
        yield process


# ---------------------------------------------------------------------- HTTP guards


def test_without_the_token_every_request_is_refused_401(ui: UiProcess) -> None:
    for path in ("/", "/static/index.html", "/?token=not-the-token"):
        response = get(ui, path)
        assert response.status == 401, path
        assert "set-cookie" not in response.headers, path
    wrong = {"Cookie": "agentplex_ui=not-the-token"}
    assert get(ui, "/", wrong).status == 401


def test_the_token_url_sets_an_httponly_strict_cookie_and_redirects_without_the_token(
    ui: UiProcess,
) -> None:
    response = get(ui, f"/?token={ui.token}&view=panels")
    assert response.status == 303
    assert response.headers["location"] == "/?view=panels"  # the token leaves the URL
    attributes = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert attributes[0] == f"agentplex_ui={ui.token}".lower()
    assert {"httponly", "samesite=strict", "path=/"} <= set(attributes)

    page = get(ui, "/", cookie(ui))
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert b"<html" in page.body.lower()


def test_the_page_is_served_under_a_strict_csp_without_inline_script_or_style(
    ui: UiProcess,
) -> None:
    page = get(ui, "/", cookie(ui))
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.body.decode().lower()
    assert "<script>" not in html and 'style="' not in html and "<style" not in html


def test_a_foreign_host_is_refused_400_even_with_the_cookie(ui: UiProcess) -> None:
    for host in (f"evil.example:{ui.port}", f"127.0.0.1:{ui.port + 1}", "127.0.0.1"):
        response = get(ui, "/", {**cookie(ui), "Host": host})
        assert response.status == 400, host
        assert b"Host" in response.body
    for host in (f"localhost:{ui.port}", f"LOCALHOST:{ui.port}", f"127.0.0.1:{ui.port}"):
        assert get(ui, "/", {**cookie(ui), "Host": host}).status == 200, host


def test_a_request_from_another_origin_is_refused_403(ui: UiProcess) -> None:
    foreign = {**cookie(ui), "Origin": "http://evil.example"}
    assert get(ui, "/", foreign).status == 403
    same = {**cookie(ui), "Origin": own_origin(ui)}
    assert get(ui, "/", same).status == 200


# ---------------------------------------------------------------------- WebSocket guards


@pytest.mark.parametrize(
    ("origin", "with_cookie"),
    [
        ("http://evil.example", True),
        ("http://127.0.0.1:1", True),  # same host, another port: another origin
        (None, True),  # no Origin at all: not a browser page of ours
        ("own", False),  # our origin, no cookie
    ],
    ids=["foreign-origin", "other-port", "no-origin", "no-cookie"],
)
def test_a_websocket_upgrade_is_refused_without_our_origin_and_the_cookie(
    ui: UiProcess, origin: str | None, with_cookie: bool
) -> None:
    with (
        pytest.raises(ws_errors.InvalidStatus) as refused,
        page_socket(ui, origin=origin, with_cookie=with_cookie),
    ):
        pass
    assert refused.value.response.status_code == 403


def test_a_websocket_with_our_origin_and_the_cookie_gets_hello_then_the_daemon_state(
    ui: UiProcess,
) -> None:
    with page_socket(ui) as page:
        assert page.next(lambda f: True) == {"op": "hello", "version": 1}
        state = page.next(lambda f: True)
        assert state["op"] == "daemon"  # up:false while the bridge is still connecting
        if not state["up"]:
            page.next(op("daemon", up=True))


# ---------------------------------------------------------------------- the bridge


def test_the_bridge_answers_wire_requests_and_forwards_every_event(
    ui: UiProcess, daemon: DaemonProcess
) -> None:
    with page_socket(ui) as page:
        page.next(op("daemon", up=True))
        listing = page.request({"type": "list"})["reply"]
        assert (listing["type"], listing["sessions"]) == ("sessions", [])

        started = page.request({"type": "start", "backend": "demo", "prompt": "hello"})
        session = started["reply"]["session"]["id"]
        topic = f"agent.chunk.{session}"
        first = page.next(lambda f: f["op"] == "event" and f["topic"] == topic)
        assert first["event"]["type"] in ("agent.chunk", "agent.chunks")
        assert first["event"]["session_id"] == session
        created = page.next(op("event", topic=f"session.status_changed.{session}"))
        assert created["event"]["session_id"] == session

        replayed = page.request({"type": "replay", "session": session, "from_seq": 1, "limit": 5})
        assert replayed["reply"]["type"] == "replayed"
        assert replayed["reply"]["chunks"][0]["seq"] == 1


def test_bad_input_from_the_page_is_answered_bad_request_and_the_socket_serves_on(
    ui: UiProcess,
) -> None:
    with page_socket(ui) as page:
        page.next(op("daemon", up=True))
        page.ws.send("this is not JSON")
        assert page.reply(None)["error"]["code"] == "bad_request"
        page.ws.send(json.dumps({"op": "request", "id": 7, "request": {"type": "no_such"}}))
        assert page.reply(7)["error"]["code"] == "bad_request"
        page.ws.send(json.dumps({"op": "request", "id": 8, "request": {"type": "send"}}))
        missing = page.reply(8)["error"]
        assert (missing["code"], "message" in missing["message"]) == ("bad_request", True)
        page.ws.send(b"\x00binary")
        assert page.reply(None)["error"]["code"] == "bad_request"
        page.ws.send("[" * 100_000)
        assert page.reply(None)["error"]["code"] == "bad_request"

        unknown = page.request({"type": "inspect", "session": "ffffffff"})["reply"]
        assert (unknown["type"], unknown["code"]) == ("error", "unknown_session")
        assert page.request({"type": "list"})["reply"]["type"] == "sessions"


# ---------------------------------------------------------------------- the daemon


def test_the_page_hears_the_daemon_leave_and_come_back(
    ui: UiProcess, daemon: DaemonProcess, short_tmp: Path
) -> None:
    with page_socket(ui) as page:
        page.next(op("daemon", up=True))
        assert daemon.stop() == 0
        page.next(op("daemon", up=False))
        down = page.request({"type": "list"})
        assert down["error"]["code"] == "daemon_unavailable"

        again = start_daemon(short_tmp, "--grace", "2")
        try:
            page.next(op("daemon", up=True))
            assert page.request({"type": "list"})["reply"]["type"] == "sessions"
            started = page.request({"type": "start", "backend": "demo", "prompt": "back"})
            session = started["reply"]["session"]["id"]
            page.next(lambda f: f["op"] == "event" and f["topic"] == f"agent.chunk.{session}")
        finally:
            assert again.stop() == 0


def test_without_a_daemon_the_page_serves_and_the_bridge_waits_for_one(short_tmp: Path) -> None:
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(short_tmp / "run"),
        AGENTPLEX_STATE_DIR=str(short_tmp / "state"),
    )
    with running_ui(env) as ui, page_socket(ui) as page:
        assert get(ui, "/", cookie(ui)).status == 200
        page.next(op("hello"))
        page.next(op("daemon", up=False))
        assert page.request({"type": "list"})["error"]["code"] == "daemon_unavailable"
        daemon = start_daemon(short_tmp, "--grace", "2")
        try:
            page.next(op("daemon", up=True))
            assert page.request({"type": "ping"})["reply"]["daemon"]["pid"] == daemon.process.pid
        finally:
            assert daemon.stop() == 0


# ---------------------------------------------------------------------- the command


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_closes_the_pages_and_the_command_exits_0(
    daemon: DaemonProcess, signum: int
) -> None:
    ui = start_ui(daemon)
    try:
        with page_socket(ui) as page:
            page.next(op("daemon", up=True))
            ui.process.send_signal(signum)
            with pytest.raises(ws_errors.ConnectionClosed) as closed:
                page.next(lambda f: False)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert ui.process.wait(timeout=DEADLINE) == 0
    finally:
        ui.stop()


def test_a_restart_takes_the_same_port_at_once_and_keeps_open_pages_logged_in(
    daemon: DaemonProcess,
) -> None:
    with running_ui(daemon) as first, page_socket(first):
        pass
    port = first.port
    with running_ui(daemon, port=port) as second:
        assert second.port == port
        assert second.token == first.token  # kept in the state dir
        assert get(second, "/", cookie(first)).status == 200  # the old cookie still works
        with page_socket(second) as page:  # and so does the page's reconnecting socket
            page.next(op("daemon", up=True))
            assert page.request({"type": "list"})["reply"]["type"] == "sessions"


def test_new_token_logs_out_every_page_opened_before(daemon: DaemonProcess) -> None:
    with running_ui(daemon) as first:
        pass
    with running_ui(daemon, "--new-token", port=first.port) as second:
        assert second.token != first.token
        assert get(second, "/", cookie(first)).status == 401
        with pytest.raises(ws_errors.InvalidStatus) as refused, page_socket(first):
            pass
        assert refused.value.response.status_code == 403
        assert get(second, "/", cookie(second)).status == 200
    with running_ui(daemon) as third:  # the new token is the one kept from now on
        assert third.token == second.token


FLOOD = "import sys\nfor i in range(400_000):\n    print(f'{i:08d} ' + 'x' * 100)\n"
"""About 44 MB of lines: more than the page's outbox (8 MiB) and the sockets' buffers."""


def test_a_page_that_stops_reading_is_closed_to_catch_up_not_buffered_without_bound(
    ui: UiProcess, daemon: DaemonProcess
) -> None:
    with page_socket(ui, stalled=True) as stalled, page_socket(ui) as reader:
        reader.next(op("daemon", up=True))
        started = reader.request(
            {"type": "start", "backend": "exec", "argv": [sys.executable, "-c", FLOOD]}
        )
        session = started["reply"]["session"]["id"]
        reader.next(op("event", topic=f"session.terminated.{session}"), timeout=300)
        # Every event of the flood has gone through the bridge once a sync mark asked for
        # now has: the daemon publishes in order, the bridge forwards in order.
        reader.request({"type": "sync", "token": "flooded"})  # the mark is held if first
        reader.next(op("event", topic="daemon.sync.flooded"), timeout=300)

        with pytest.raises(ws_errors.ConnectionClosed) as closed:
            while True:  # only now does the stalled page read what reached it
                stalled.ws.recv(timeout=DEADLINE)
        assert closed.value.rcvd is not None, closed.value
        assert (closed.value.rcvd.code, "replay" in closed.value.rcvd.reason) == (1013, True)
    with page_socket(ui) as again:  # the page reconnects and catches up by replay
        again.next(op("daemon", up=True))
        page = again.request({"type": "replay", "session": session, "from_seq": 1, "limit": 3})
        assert (page["reply"]["type"], page["reply"]["last_seq"]) == ("replayed", 400_000)
        first = page["reply"]["chunks"][0]
        assert first.get("seq", first.get("first_seq")) == 1
