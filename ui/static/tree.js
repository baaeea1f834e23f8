// The tree of tags (an ARIA tree): each tag with its panels, their member sessions nested
// under them, and its other sessions (windowed past a few dozen: see windowed.js). The tree
// re-renders only when its shape changes; a status change re-renders the one session node it
// concerns, and chunks never reach it.

import { useState } from "./vendor/htm-preact-standalone.module.js";
import { html, useStoreKeys } from "./hooks.js";
import { formatUsage, memberSessions, personaIcon, shortId, statusText } from "./store.js";
import { useWindow } from "./windowed.js";

function isSelected(store, kind, id) {
  const sel = store.selection;
  return Boolean(sel && sel.kind === kind && sel.id === id);
}

const NODE_PX = 44; // a session node's height before one is measured

function SessionNode({ app, id, setsize, posinset }) {
  const store = app.store;
  useStoreKeys(store, [`session:${id}`, `select:session:${id}`]);
  const info = store.sessions.get(id);
  if (!info) return null;
  const running = info.status === "running" || info.status === "starting";
  const waiting = info.status === "waiting_input";
  const classes = ["node", "session-node", waiting ? "waiting" : "", `status-${info.status}`];
  const label = `${info.persona || info.backend} ${shortId(id)}, ${statusText(info.status)}`;
  return html`<li role="treeitem" tabindex="-1" class=${classes.join(" ")}
      data-session=${id} data-status=${info.status} aria-label=${label}
      aria-selected=${isSelected(store, "session", id) ? "true" : "false"}
      aria-setsize=${setsize} aria-posinset=${posinset}
      onClick=${(ev) => (ev.stopPropagation(), app.select("session", id))}>
    <span class=${`persona-icon${running ? " pulse" : ""}`} aria-hidden="true">${personaIcon(info)}</span>
    <span class="node-name">${info.persona || info.backend} <code>${shortId(id)}</code></span>
    <span class="status-text">${waiting ? "⚠ needs you" : statusText(info.status)}</span>
  </li>`;
}

/** A panel, and its member sessions nested under it. The members' group is the panel
 * node's next sibling, owned by it (aria-owns), so that the node itself is one row. */
function PanelNode({ app, id }) {
  const store = app.store;
  useStoreKeys(store, [`panel:${id}`, `select:panel:${id}`, "sessions", "filter"]);
  const [open, setOpen] = useState(true);
  const panel = store.panels.get(id);
  if (!panel) return null;
  const topic = panel.config.topic;
  const members = memberSessions(panel).filter((sid) => {
    const info = store.sessions.get(sid);
    return info && store.matches(info);
  });
  const group = `panel-members-${id}`;
  const toggle = (ev) => {
    ev.stopPropagation();
    setOpen(!open);
  };
  return html`<li role="treeitem" tabindex="-1" class="node panel-node" data-panel=${id}
      aria-label=${`Panel: ${topic}, ${panel.status}, ${members.length} members`}
      aria-selected=${isSelected(store, "panel", id) ? "true" : "false"}
      aria-expanded=${members.length ? (open ? "true" : "false") : null}
      aria-owns=${members.length && open ? group : null}
      onClick=${(ev) => (ev.stopPropagation(), app.select("panel", id))}>
    <span class="panel-icon" aria-hidden="true">🗣️</span>
    <span class="node-name">${topic.length > 40 ? `${topic.slice(0, 39)}…` : topic}</span>
    <span class="status-text">${panel.speaking ? `${panel.speaking} speaking` : panel.status}
      ${members.length
        ? html`<span class="fold" aria-hidden="true" onClick=${toggle}
            title=${open ? "Hide the members" : "Show the members"}>${open ? "▾" : "▸"} ${members.length}</span>`
        : null}</span>
  </li>
  ${members.length && open
    ? html`<li role="none" class="members-item"><ul role="group" id=${group} class="panel-members"
          data-owner=${id} aria-label=${`Members of ${topic}`}>
        ${members.map((sid) => html`<${SessionNode} key=${sid} app=${app} id=${sid} />`)}
      </ul></li>`
    : null}`;
}

function TagUsage({ app, tag }) {
  useStoreKeys(app.store, ["usage"]);
  return html`<span class="tag-usage">${formatUsage(app.store.tagUsage(tag))}</span>`;
}

function TagSessions({ app, ids }) {
  const view = useWindow(ids.length, NODE_PX);
  const nodes = ids.slice(view.first, view.last).map((id, i) => html`<${SessionNode} key=${id}
    app=${app} id=${id} setsize=${view.windowed ? ids.length : null}
    posinset=${view.windowed ? view.first + i + 1 : null} />`);
  return view.spacers(nodes);
}

function TagNode({ app, tag }) {
  const [open, setOpen] = useState(true);
  const count = tag.total;
  const toggle = (ev) => {
    ev.stopPropagation();
    setOpen(!open);
  };
  return html`<li role="treeitem" tabindex="-1" class="tag-node" data-tag=${tag.name}
      aria-expanded=${open ? "true" : "false"} aria-label=${`${tag.name}, ${count} items`}>
    <div class="tag-row" onClick=${toggle}>
      <span class="twisty" aria-hidden="true">${open ? "▾" : "▸"}</span>
      <span class="tag-name">${tag.name}</span>
      ${count >= 2 ? html`<span class="count-badge" title=${`${count} sessions and panels`}>${count}</span>` : null}
      <${TagUsage} app=${app} tag=${tag.name} />
    </div>
    ${open
      ? html`<ul role="group">
          ${tag.panels.map((id) => html`<${PanelNode} key=${`p${id}`} app=${app} id=${id} />`)}
          <${TagSessions} app=${app} ids=${tag.sessions} />
        </ul>`
      : null}
  </li>`;
}

function visibleItems(tree) {
  return [...tree.querySelectorAll('[role="treeitem"]')].filter((item) => item.offsetParent !== null);
}

/** Arrow keys move between items, Left/Right fold a tag, Enter opens an item. */
function onTreeKey(ev) {
  const tree = ev.currentTarget;
  const items = visibleItems(tree);
  const here = items.indexOf(document.activeElement);
  const move = (i) => {
    const item = items[Math.max(0, Math.min(items.length - 1, i))];
    if (item) item.focus();
  };
  const current = items[here];
  switch (ev.key) {
    case "ArrowDown":
      move(here + 1);
      break;
    case "ArrowUp":
      move(here - 1);
      break;
    case "Home":
      move(0);
      break;
    case "End":
      move(items.length - 1);
      break;
    case "ArrowLeft":
    case "ArrowRight": {
      if (!current) return;
      const wantOpen = ev.key === "ArrowRight";
      if (current.hasAttribute("aria-expanded")) {
        if ((current.getAttribute("aria-expanded") === "true") !== wantOpen) {
          current.querySelector(":scope > .tag-row, :scope .fold").click();
        }
      } else if (!wantOpen) {
        const members = current.closest(".panel-members");
        const owner = members && tree.querySelector(`[data-panel="${members.dataset.owner}"]`);
        const tag = owner || current.closest("[data-tag]");
        if (tag) tag.focus();
      }
      break;
    }
    case "Enter":
    case " ":
      if (current) current.click();
      break;
    default:
      return;
  }
  ev.preventDefault();
}

function onTreeFocus(ev) {
  if (ev.target !== ev.currentTarget) return;
  const start = ev.currentTarget.querySelector('[aria-selected="true"]') ||
    ev.currentTarget.querySelector('[role="treeitem"]');
  if (start) start.focus();
}

export function Tree({ app }) {
  const store = app.store;
  useStoreKeys(store, ["sessions", "panels", "filter"]);
  const tags = store.tags().map((tag) => ({
    ...tag,
    sessions: tag.sessions.filter((id) => store.matches(store.sessions.get(id))),
  }));
  const shown = tags.filter((tag) => tag.sessions.length + tag.panels.length > 0);
  return html`<nav class="sidebar" aria-label="Tags">
    <h2 class="section-title" id="tree-title">Tags</h2>
    <ul role="tree" aria-label="Sessions by tag" class="tree" tabindex="0"
        onKeyDown=${onTreeKey} onFocus=${onTreeFocus}>
      ${shown.map((tag) => html`<${TagNode} key=${tag.name} app=${app} tag=${tag} />`)}
    </ul>
    ${shown.length ? null : html`<p class="empty">No sessions yet.</p>`}
  </nav>`;
}
