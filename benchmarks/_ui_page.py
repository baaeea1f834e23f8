"""The browser side of benchmarks/ui.py: Chromium, the page's watchers (scripts run in the
page), the ``agentplex ui`` process, and the sessions the measures start."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentplex import protocol as p

from _harness import (
    PYTHON,
    AgentplexDaemon,
    Control,
    start_exec,
    stop_process_tree,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 120_000

STAMPER = """\
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
sys.stdin.readline()  # "go": every session starts together, once the page watches
start = time.time()
for i in range(int(rate * seconds)):
    pause = start + i / rate - time.time()
    if pause > 0:
        time.sleep(pause)
    print(f"{time.time():.6f} {i}", flush=True)
"""
TICKER = "while :; do echo tick; sleep 1; done"
"""A streaming session as light as a session gets (500 of them at once on 2 cores)."""
MILLION = """\
import sys
count = int(sys.argv[1])
for start in range(0, count, 10_000):
    sys.stdout.write("".join(f"line {i}\\n" for i in range(start, min(start + 10_000, count))))
"""

OBSERVE_LINES = """view => {
    window.__lines = [];
    new MutationObserver(records => {
        const now = performance.timeOrigin + performance.now();
        for (const r of records) for (const n of r.addedNodes) {
            if (n.nodeType !== 1) continue;
            const els = n.matches('[data-seq]') ? [n] : [...n.querySelectorAll('[data-seq]')];
            for (const el of els) {
                const text = (el.querySelector('.chunk-text') || el).textContent || '';
                const line = /\\d+\\.\\d{6} \\d+/.exec(text);
                if (line) window.__lines.push([line[0], now]);
            }
        }
    }).observe(view, {childList: true, subtree: true});
}"""
LINE = re.compile(r"\d+\.\d{6} \d+")
"""A stamper's line (``<time.time()> <i>``) in a WebSocket frame or a chunk's text."""
WATCH_LOAD = """
window.__longtasks = [];
new PerformanceObserver(list => {
    for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
}).observe({type: 'longtask', buffered: true});
window.__rowsAt = null;
window.__rowsWanted = %d;
// The list knows every session (data-total) and shows every row in view: a long list renders
// only those (ui/static/windowed.js), so "every row" is every row that can be seen.
const rowsSeen = () => {
    if (window.__rowsAt !== null) return;
    const list = document.querySelector('[data-testid="session-list"]');
    if (!list || Number(list.dataset.total) < window.__rowsWanted) return;
    const rows = list.querySelectorAll('[data-testid="session-row"]');
    const column = list.closest('.middle') || document.documentElement;
    const last = rows[rows.length - 1];
    if (rows.length >= window.__rowsWanted || (last && last.getBoundingClientRect().bottom
            >= Math.min(column.getBoundingClientRect().bottom, window.innerHeight)))
        window.__rowsAt = performance.now();
};
new MutationObserver(rowsSeen).observe(document, {childList: true, subtree: true});
"""
OPEN_TAIL = """([sid, last]) => new Promise(done => {
    const row = document.querySelector(`[data-testid="session-row"][data-session="${sid}"]`);
    const tail = `[data-testid="transcript"][data-session="${sid}"] [data-seq="${last}"]`;
    const t0 = performance.now();
    const seen = () => {
        if (document.querySelector(tail) === null) return false;
        observer.disconnect();
        done(performance.now() - t0);
        return true;
    };
    const observer = new MutationObserver(seen);
    observer.observe(document.body, {childList: true, subtree: true, attributes: true});
    row.click();
    seen();
})"""


# --------------------------------------------------------------------------- the UI process


@contextlib.contextmanager
def ui_process(daemon: AgentplexDaemon) -> Iterator[str]:
    """``agentplex ui --port 0 --json`` for ``daemon``; yields the URL carrying the token."""
    env = dict(
        os.environ,
        AGENTPLEX_RUNTIME_DIR=str(daemon.runtime_dir),
        AGENTPLEX_STATE_DIR=str(daemon.state_dir),
    )
    process = subprocess.Popen(
        [PYTHON, "-m", "agentplex.cli.main", "ui", "--port", "0", "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(daemon.base / "ui.log", "wb"),  # noqa: SIM115 (the child owns it)
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"agentplex ui said nothing: {(daemon.base / 'ui.log').read_text()}")
        yield str(json.loads(line)["url"])
    finally:
        stop_process_tree(process)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        pw.selectors.set_test_id_attribute("data-testid")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, url: str, init_script: str | None = None, watch: Any = None) -> Any:
    """A page on the dashboard, live; ``watch(page)`` (kept as ``page.watch``) is set up
    before it loads."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    if init_script:
        page.add_init_script(init_script)
    page.watch = watch(page) if watch else None
    page.goto(url)
    page.wait_for_selector('[data-testid="connection"][data-state="live"]')
    return page


def start_many(control: Control, argvs: list[list[str]], cwd: Path) -> list[str]:
    replies = control.call_many([start_exec(argv, cwd) for argv in argvs], timeout=300)
    ids = []
    for reply in replies:
        assert isinstance(reply, p.Started), reply
        ids.append(reply.session.id)
    return ids


def end_all(control: Control, ids: list[str]) -> None:
    control.call_many([p.Terminate(session=sid, grace=1.0) for sid in ids], timeout=300)


# --------------------------------------------------------------------------- (a) latency


class SocketClock:
    """When each stamper line reached the browser's WebSocket (Chromium's network stack, via
    the DevTools protocol), on the wall clock: what is left after it is the page's share."""

    def __init__(self, page: Any) -> None:
        self.offset: float | None = None  # wall clock - the protocol's monotonic clock, s
        self.arrived: dict[str, float] = {}  # line -> ms since the epoch
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.webSocketWillSendHandshakeRequest", self.handshake)
        cdp.on("Network.webSocketFrameReceived", self.frame)
        cdp.send("Network.enable")

    def handshake(self, params: dict[str, Any]) -> None:
        self.offset = float(params["wallTime"]) - float(params["timestamp"])

    def frame(self, params: dict[str, Any]) -> None:
        if self.offset is None:
            return
        at = (float(params["timestamp"]) + self.offset) * 1000
        for line in LINE.findall(params["response"].get("payloadData", "")):
            self.arrived.setdefault(line, at)
