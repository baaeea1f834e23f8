// Keyboard: `?` help, `j`/`k` move in the session list, `/` focuses the filter, Esc closes
// the help or clears the filter. Keys typed into a field are the field's, except Esc.

import { html } from "./hooks.js";

export const SHORTCUTS = [
  ["?", "show this help"],
  ["j / k", "next / previous session in the list (opens it)"],
  ["/", "filter sessions"],
  ["Esc", "close this help, clear the filter, leave a field"],
  ["Ctrl+Enter", "send the message (queued while a turn runs)"],
  ["↑ ↓ ← → Enter", "move in the tag tree, fold a tag, open an item"],
];

function typing(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
}

function helpDialog() {
  return document.querySelector('[data-testid="help"]');
}

/** Through the list's order (the store's, not the DOM's: a long list renders only a window). */
function moveInList(app, step) {
  const ids = app.store.shownSessions();
  if (!ids.length) return;
  const sel = app.store.selection;
  const here = sel && sel.kind === "session" ? ids.indexOf(sel.id) : -1;
  const next = here < 0 ? (step > 0 ? 0 : ids.length - 1) : Math.max(0, Math.min(ids.length - 1, here + step));
  app.select("session", ids[next]);
  if (app.revealRow) app.revealRow(ids[next]);
}

function escape(app, ev) {
  const dialog = helpDialog();
  if (dialog && dialog.open) {
    dialog.close();
    return;
  }
  const filter = document.querySelector('[data-testid="filter"]');
  if (app.store.filter || ev.target === filter) {
    app.store.setFilter("");
    if (filter) {
      filter.value = "";
      filter.blur();
    }
    return;
  }
  if (typing(ev.target)) ev.target.blur();
}

export function onKey(app, ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape") {
    escape(app, ev);
    return;
  }
  if (typing(ev.target)) return;
  switch (ev.key) {
    case "?":
      openHelp();
      break;
    case "/": {
      const filter = document.querySelector('[data-testid="filter"]');
      if (filter) filter.focus();
      break;
    }
    case "j":
      moveInList(app, 1);
      break;
    case "k":
      moveInList(app, -1);
      break;
    default:
      return;
  }
  ev.preventDefault();
}

export function openHelp() {
  const dialog = helpDialog();
  if (dialog && !dialog.open) dialog.showModal();
}

export function HelpDialog() {
  return html`<dialog data-testid="help" class="help" aria-labelledby="help-title">
    <h2 id="help-title">Keyboard shortcuts</h2>
    <dl class="shortcuts">
      ${SHORTCUTS.map(([key, what]) => html`<div><dt><kbd>${key}</kbd></dt><dd>${what}</dd></div>`)}
    </dl>
    <button type="button" class="btn primary" data-action="close-help"
      onClick=${() => helpDialog().close()}>Close</button>
  </dialog>`;
}
