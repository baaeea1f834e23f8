// The session list (open, switch, interrupt, terminate) and the start form.

import { useRef, useState } from "./vendor/htm-preact-standalone.module.js";
import { describeError, html, useStoreKeys } from "./hooks.js";
import { formatUsage, isEnded, personaIcon, shortId, statusText, tagOf } from "./store.js";
import { useWindow } from "./windowed.js";

const ROW_PX = 96; // a row's height before one is measured

function SessionRow({ app, id, setsize, posinset }) {
  const store = app.store;
  useStoreKeys(store, [`session:${id}`, `select:session:${id}`]);
  const [note, setNote] = useState("");
  const info = store.sessions.get(id);
  if (!info) return null;
  const ended = isEnded(info.status);
  const active = store.active === id;
  const selected = Boolean(store.selection && store.selection.kind === "session" && store.selection.id === id);
  const act = (request, done) => async (ev) => {
    ev.stopPropagation();
    try {
      await app.request(request);
      setNote(done);
    } catch (err) {
      setNote(describeError(err));
    }
  };
  const classes = ["row", selected ? "selected" : "", info.status === "waiting_input" ? "waiting" : "", ended ? "ended" : ""];
  return html`<li data-testid="session-row" data-session=${id} class=${classes.join(" ")}
      aria-current=${active ? "true" : null} data-selected=${selected ? "true" : null}
      aria-setsize=${setsize} aria-posinset=${posinset} tabindex="0"
      onClick=${() => app.select("session", id)}
      onKeyDown=${(ev) => ev.key === "Enter" && ev.target === ev.currentTarget && app.select("session", id)}>
    <div class="row-main">
      <span class="row-icon" aria-hidden="true">${personaIcon(info)}</span>
      <span class="row-name">${info.persona || info.backend}</span>
      <code class="row-id">${shortId(id)}</code>
      ${active ? html`<span class="active-mark" title="The daemon's active session">★ active</span>` : null}
      <span class=${`row-status status-${info.status}`}>
        ${info.status === "waiting_input" ? "⚠ needs you" : statusText(info.status)}
      </span>
    </div>
    <div class="row-meta">
      <span class="row-tag">#${tagOf(info)}</span>
      <span class="row-backend">${info.backend}</span>
      <span class="row-usage">${formatUsage(info.usage)}</span>
    </div>
    <div class="row-actions">
      <button type="button" class="btn" data-action="switch" disabled=${active}
        aria-label=${`Make ${shortId(id)} the active session`}
        onClick=${act({ type: "switch", session: id }, "now active")}>Switch</button>
      <button type="button" class="btn" data-action="interrupt" disabled=${ended}
        aria-label=${`Interrupt ${shortId(id)}`}
        onClick=${act({ type: "interrupt", session: id }, "interrupted")}>Interrupt</button>
      <button type="button" class="btn danger" data-action="terminate" disabled=${ended}
        aria-label=${`Terminate ${shortId(id)}`}
        onClick=${act({ type: "terminate", session: id }, "terminated")}>Terminate</button>
      <span class="note" role="status">${note}</span>
    </div>
  </li>`;
}

/** Moves focus to a session's row once it is rendered (after `reveal` scrolled to it). */
function focusRow(id, tries = 3) {
  requestAnimationFrame(() => {
    const row = document.querySelector(`[data-testid="session-row"][data-session="${id}"]`);
    if (row) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    } else if (tries > 1) {
      focusRow(id, tries - 1);
    }
  });
}

export function SessionList({ app }) {
  const store = app.store;
  useStoreKeys(store, ["sessions", "filter"]);
  const ids = store.shownSessions();
  const view = useWindow(ids.length, ROW_PX);
  // `j`/`k` (keys.js) move through every session, rendered or not: the list scrolls to it.
  app.revealRow = (id) => {
    const index = ids.indexOf(id);
    if (index < 0) return;
    view.reveal(index);
    focusRow(id);
  };
  const rows = ids.slice(view.first, view.last).map((id, i) => html`<${SessionRow} key=${id}
    app=${app} id=${id} setsize=${view.windowed ? ids.length : null} posinset=${view.windowed ? view.first + i + 1 : null} />`);
  return html`<section class="sessions" aria-labelledby="sessions-title">
    <h2 class="section-title" id="sessions-title">Sessions <span class="muted">${ids.length}</span></h2>
    <ul data-testid="session-list" class="session-list" aria-labelledby="sessions-title"
        data-total=${ids.length}>
      ${view.spacers(rows)}
    </ul>
    ${ids.length ? null : html`<p class="empty">${store.filter ? "No session matches the filter." : "No sessions."}</p>`}
  </section>`;
}

function startRequest(form) {
  const data = new FormData(form);
  const request = { type: "start" };
  for (const name of ["backend", "persona", "tag", "cwd", "prompt"]) {
    const value = String(data.get(name) || "").trim();
    if (value) request[name] = value;
  }
  return request;
}

export function StartForm({ app }) {
  const store = app.store;
  useStoreKeys(store, ["catalog"]);
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const form = useRef(null);
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    try {
      const reply = await app.request(startRequest(form.current));
      store.upsertSession(reply.session);
      form.current.elements.prompt.value = "";
      setNote(`started ${shortId(reply.session.id)}`);
      app.select("session", reply.session.id);
    } catch (err) {
      setNote(describeError(err));
    }
    setBusy(false);
  };
  const backends = store.backends.length ? store.backends : [{ id: "demo", available: true }];
  return html`<section class="start" aria-labelledby="start-title">
    <h2 class="section-title" id="start-title">Start a session</h2>
    <form data-testid="start-form" ref=${form} onSubmit=${submit} class="start-form">
      <label>Backend
        <select name="backend">
          ${backends.map((b) => html`<option value=${b.id} disabled=${!b.available}
            selected=${b.id === "demo"}>${b.id}${b.available ? "" : " (unavailable)"}</option>`)}
        </select>
      </label>
      <label>Persona
        <select name="persona">
          <option value="">none</option>
          ${store.personas.map((p) => html`<option value=${p.name}>${p.icon} ${p.name}</option>`)}
        </select>
      </label>
      <label>Tag <input name="tag" autocomplete="off" placeholder="e.g. build" /></label>
      <label>Directory <input name="cwd" autocomplete="off" placeholder="the daemon's cwd" /></label>
      <label class="wide">Prompt
        <textarea name="prompt" rows="2" placeholder="First message (optional)"></textarea>
      </label>
      <div class="wide form-actions">
        <button class="btn primary" type="submit" disabled=${busy}>Start</button>
        <span class="note" role="status">${note}</span>
      </div>
    </form>
  </section>`;
}
