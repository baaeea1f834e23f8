// The page: connects to the bridge, routes its events (chunks only to the open transcript,
// lifecycle to the store, panel events to the open panel), re-lists and catches up after
// every reconnect, and lays out the views.

import { render } from "./vendor/htm-preact-standalone.module.js";
import { Connection, bridgeUrl } from "./connection.js";
import { html, useStoreKeys } from "./hooks.js";
import { HelpDialog, onKey, openHelp } from "./keys.js";
import { PanelPane } from "./panel.js";
import { SessionList, StartForm } from "./sessions.js";
import { Store, shortId } from "./store.js";
import { TranscriptPane } from "./transcript.js";
import { Tree } from "./tree.js";

const CONNECTION_TEXT = {
  live: "live",
  reconnecting: "reconnecting…",
  "daemon-down": "daemon not running",
};

class App {
  constructor() {
    this.store = new Store();
    this.conn = new Connection(bridgeUrl(window.location));
    this.request = (request, timeoutMs) => this.conn.request(request, timeoutMs);
    this.feed = null;
    this.panel = null;
    this.daemonUp = false;
    this.refreshTimer = null;
    this.notify = false;
    this.conn.listen((frame) => this.onFrame(frame));
  }

  start() {
    this.restoreSelection();
    this.conn.connect();
    this.store.on("waiting", () => this.updateTitle());
  }

  openFeed(feed) {
    this.feed = feed;
  }

  openPanel(state) {
    this.panel = state;
  }

  /** The reader picked a session or panel (on a phone, the view is then scrolled to). */
  select(kind, id) {
    this.store.select(kind, id);
    if (kind && window.matchMedia("(max-width: 600px)").matches) {
      requestAnimationFrame(() => {
        const detail = document.querySelector(".detail");
        if (detail) detail.scrollIntoView({ block: "start" });
      });
    }
    const url = kind ? `#${kind}/${id}` : window.location.pathname;
    if (window.location.hash !== (kind ? url : "")) history.replaceState(null, "", url);
  }

  restoreSelection() {
    const match = /^#(session|panel)\/([\w-]+)$/.exec(window.location.hash);
    if (match) this.store.select(match[1], match[2]);
  }

  // ---------------------------------------------------------------- frames

  onFrame(frame) {
    switch (frame.op) {
      case "event":
        this.onEvent(frame.event);
        break;
      case "daemon":
        this.onDaemon(frame.up);
        break;
      case "closed":
        this.store.setConnection("reconnecting");
        break;
      default: // "open", "hello": wait for the daemon frame
        break;
    }
  }

  onDaemon(up) {
    this.daemonUp = up;
    this.store.setConnection(up ? "live" : "daemon-down");
    if (!up) return;
    this.refresh();
    if (this.feed) this.feed.resync();
    if (this.panel) this.panel.load();
  }

  async refresh() {
    try {
      const [sessions, panels] = await Promise.all([
        this.request({ type: "list" }),
        this.request({ type: "panel_list" }),
      ]);
      this.store.setSessions(sessions.sessions, sessions.active);
      this.store.setPanels(panels.panels);
      if (!this.store.selection && sessions.active) this.store.select("session", sessions.active);
    } catch (err) {
      console.warn("agentplex ui: could not list sessions", err);
    }
    try {
      const [backends, personas] = await Promise.all([
        this.request({ type: "backends" }),
        this.request({ type: "personas" }),
      ]);
      this.store.setCatalog(backends.backends, personas.personas);
    } catch (err) {
      console.warn("agentplex ui: could not list backends or personas", err);
    }
  }

  /** A panel the page does not know yet: re-list panels (at most every 500 ms). */
  refreshPanelsSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        const reply = await this.request({ type: "panel_list" });
        this.store.setPanels(reply.panels);
      } catch (err) {
        console.warn("agentplex ui: could not list panels", err);
      }
    }, 500);
  }

  onEvent(event) {
    const type = event.type;
    if (type === "agent.chunk" || type === "agent.chunks") {
      if (this.feed && this.feed.sid === event.session_id) this.feed.onChunks(event);
      return;
    }
    if (type.startsWith("panel.")) {
      this.onPanelEvent(event);
      return;
    }
    this.onSessionEvent(event);
  }

  onSessionEvent(event) {
    const store = this.store;
    switch (event.type) {
      case "session.created":
        store.upsertSession(event.session);
        break;
      case "session.terminated":
        store.upsertSession(event.session);
        this.quietCheck(event.session.id);
        break;
      case "session.list_changed":
        store.setSessions(event.sessions, event.active);
        break;
      case "session.active_changed":
        store.setActive(event.session_id);
        break;
      case "session.status_changed":
        store.setStatus(event.session_id, event.status);
        if (event.status === "waiting_input") this.notifyWaiting(event.session_id);
        this.quietCheck(event.session_id);
        break;
      default:
        break;
    }
  }

  /** A status change of the open session: make sure no chunk before it was missed. */
  quietCheck(sessionId) {
    if (this.feed && this.feed.sid === sessionId) this.feed.catchUp();
  }

  onPanelEvent(event) {
    const store = this.store;
    const known = store.panels.get(event.panel_id);
    if (event.panel) store.upsertPanel(event.panel);
    else if (!known) this.refreshPanelsSoon();
    if (event.type === "panel.turn_started" && known) {
      store.upsertPanel({ ...known, speaking: event.participant, round: event.round, turn: event.turn });
    }
    if (this.panel && this.panel.id === event.panel_id) this.panel.onEvent(event);
  }

  // ---------------------------------------------------------------- notifications

  updateTitle() {
    const n = this.store.waitingCount;
    document.title = n ? `(${n}) agentplex` : "agentplex";
  }

  async enableNotifications() {
    if (!("Notification" in window)) return "not supported by this browser";
    const answer = await Notification.requestPermission();
    this.notify = answer === "granted";
    return this.notify ? "on" : `not allowed (${answer})`;
  }

  notifyWaiting(sessionId) {
    if (!this.notify || document.hasFocus()) return;
    const info = this.store.sessions.get(sessionId);
    const who = info ? `${info.persona || info.backend} ${shortId(sessionId)}` : shortId(sessionId);
    const note = new Notification("agentplex: a session needs you", { body: `${who} asks for permission`, tag: sessionId });
    note.addEventListener("click", () => {
      window.focus();
      this.select("session", sessionId);
    });
  }
}

function ConnectionBadge({ app }) {
  useStoreKeys(app.store, ["connection"]);
  const state = app.store.connection;
  return html`<span data-testid="connection" data-state=${state} class=${`connection conn-${state}`}
      role="status" aria-live="polite">
    <span class="dot" aria-hidden="true"></span>${CONNECTION_TEXT[state]}
  </span>`;
}

function NotifyButton({ app }) {
  const click = async (ev) => {
    const button = ev.currentTarget;
    button.textContent = `Notifications: ${await app.enableNotifications()}`;
  };
  return html`<button type="button" class="btn" data-action="notify" onClick=${click}>🔔 Notify me</button>`;
}

function WaitingAnnouncer({ app }) {
  useStoreKeys(app.store, ["waiting"]);
  const n = app.store.waitingCount;
  return html`<p class="visually-hidden" role="status" aria-live="polite">
    ${n ? `${n} session${n > 1 ? "s" : ""} need${n > 1 ? "" : "s"} you` : ""}
  </p>`;
}

function TopBar({ app }) {
  return html`<header class="topbar">
    <h1 class="brand"><span aria-hidden="true">◆</span> agentplex</h1>
    <${ConnectionBadge} app=${app} />
    <label class="filter">
      <span class="visually-hidden">Filter sessions</span>
      <input data-testid="filter" type="search" placeholder="Filter (/)" autocomplete="off"
        onInput=${(ev) => app.store.setFilter(ev.currentTarget.value)} />
    </label>
    <${NotifyButton} app=${app} />
    <button type="button" class="btn" data-action="help" aria-label="Keyboard shortcuts"
      onClick=${openHelp}>?</button>
  </header>`;
}

function Detail({ app }) {
  useStoreKeys(app.store, ["selection"]);
  const sel = app.store.selection;
  if (sel && sel.kind === "session") {
    return html`<${TranscriptPane} key=${`s${sel.id}`} app=${app} sessionId=${sel.id} />`;
  }
  if (sel && sel.kind === "panel") {
    return html`<${PanelPane} key=${`p${sel.id}`} app=${app} panelId=${sel.id} />`;
  }
  return html`<section class="pane empty-pane"><p>Select a session or a panel to see it here.
    Press <kbd>?</kbd> for keyboard shortcuts.</p></section>`;
}

function Page({ app }) {
  return html`<${TopBar} app=${app} />
    <div class="layout">
      <${Tree} app=${app} />
      <div class="middle">
        <${SessionList} app=${app} />
        <${StartForm} app=${app} />
      </div>
      <main class="detail"><${Detail} app=${app} /></main>
    </div>
    <${HelpDialog} />
    <${WaitingAnnouncer} app=${app} />`;
}

const app = new App();
const root = document.getElementById("app");
root.textContent = "";
render(html`<${Page} app=${app} />`, root);
document.addEventListener("keydown", (ev) => onKey(app, ev));
app.start();
// For the browser tests and the console: the page's state, read-only by convention.
window.agentplex = app;
