// What the page knows: sessions, panels, the daemon's active session, the connection, and
// what is selected. Listeners subscribe to narrow keys so that a status change re-renders
// one tree node and one list row, and a chunk re-renders nothing here at all:
//   "sessions"        a session appeared or vanished, or changed tag (tree and list shape)
//   "session:<id>"    one session's snapshot changed
//   "panels"          a panel appeared or vanished, or changed tag
//   "panel:<id>"      one panel's snapshot changed
//   "usage"           some session's or panel's tokens or cost changed (tag totals)
//   "select:<kind>:<id>"  that session or panel was selected or deselected
//   "active" "waiting" "connection" "selection" "filter" "catalog"

export const UNTAGGED = "(untagged)";

const BACKEND_ICONS = {
  claude: "✳️",
  codex: "🧠",
  gemini: "✨",
  acp: "🔌",
  demo: "🎭",
  exec: "⚙️",
};

export function personaIcon(info) {
  return info.persona_icon || BACKEND_ICONS[info.backend] || "🤖";
}

export function tagOf(info) {
  return info.tag || UNTAGGED;
}

/** The tag the daemon gives a panel's member sessions when the panel has none
 * (supervisor/panels/member_turn.py): the panel is shown under it too, its members with it. */
export const PANELS_TAG = "panels";

export function panelTag(panel) {
  return (panel.config && panel.config.tag) || PANELS_TAG;
}

/** The member sessions of a panel (agents, once started). */
export function memberSessions(panel) {
  const ids = [];
  for (const member of panel.members || []) if (member.session_id) ids.push(member.session_id);
  return ids;
}

const ENDED = new Set(["exited", "terminated", "failed"]);

export function isEnded(status) {
  return ENDED.has(status);
}

export const STATUS_TEXT = {
  starting: "starting",
  running: "running",
  idle: "idle",
  waiting_input: "needs you",
  exited: "exited",
  terminated: "terminated",
  failed: "failed",
  interrupted: "interrupted",
};

export function statusText(status) {
  return STATUS_TEXT[status] || status;
}

// The fields a list row or tree node shows: a list_changed that changes none of them
// (e.g. only `chunks`) re-renders nothing.
const SHOWN = ["status", "persona", "persona_icon", "queued", "turns", "model", "ended_reason"];

function usageKey(usage) {
  if (!usage) return "";
  return `${usage.input_tokens || 0}/${usage.output_tokens || 0}/${usage.cost_usd || 0}`;
}

export class Store {
  constructor() {
    this.sessions = new Map();
    this.panels = new Map();
    this.active = null;
    this.connection = "reconnecting";
    this.selection = null; // {kind: "session"|"panel", id}
    this.filter = "";
    this.backends = [];
    this.personas = [];
    this.listeners = new Map();
    this.stamps = new Map(); // key → the emit count when it was last emitted
    this.emitted = 0;
    this.waitingCount = 0;
  }

  /** The latest emit among `keys` (a view compares it to what it rendered). */
  stamp(keys) {
    let latest = 0;
    for (const key of keys) latest = Math.max(latest, this.stamps.get(key) || 0);
    return latest;
  }

  on(key, fn) {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(key) {
    this.stamps.set(key, ++this.emitted);
    const set = this.listeners.get(key);
    if (!set) return;
    for (const fn of [...set]) fn();
  }

  // ------------------------------------------------------------------ sessions

  /** The whole table (a `list` reply or `session.list_changed`). */
  setSessions(list, active) {
    const seen = new Set();
    let shape = false;
    let usage = false;
    for (const info of list) {
      seen.add(info.id);
      const change = this.merge(info);
      shape = shape || change.shape;
      usage = usage || change.usage;
    }
    for (const id of [...this.sessions.keys()]) {
      if (!seen.has(id)) {
        this.sessions.delete(id);
        shape = true;
      }
    }
    if (shape) this.emit("sessions");
    if (usage || shape) this.emit("usage");
    this.setActive(active === undefined ? this.active : active);
    this.countWaiting();
  }

  /** One snapshot (`session.created`, `session.terminated`, a reply). */
  upsertSession(info) {
    const change = this.merge(info);
    if (change.shape) this.emit("sessions");
    if (change.usage || change.shape) this.emit("usage");
    this.countWaiting();
  }

  merge(info) {
    const old = this.sessions.get(info.id);
    this.sessions.set(info.id, info);
    if (!old) return { shape: true, usage: true };
    const shape = tagOf(old) !== tagOf(info);
    const usage = usageKey(old.usage) !== usageKey(info.usage);
    if (usage || SHOWN.some((field) => old[field] !== info[field])) {
      this.emit(`session:${info.id}`);
    }
    return { shape, usage };
  }

  setStatus(id, status) {
    const old = this.sessions.get(id);
    if (!old || old.status === status) return;
    this.sessions.set(id, { ...old, status });
    this.emit(`session:${id}`);
    this.countWaiting();
  }

  setActive(id) {
    if (id === this.active) return;
    const previous = this.active;
    this.active = id;
    this.emit("active");
    if (previous) this.emit(`session:${previous}`);
    if (id) this.emit(`session:${id}`);
  }

  countWaiting() {
    let n = 0;
    for (const info of this.sessions.values()) if (info.status === "waiting_input") n++;
    if (n !== this.waitingCount) {
      this.waitingCount = n;
      this.emit("waiting");
    }
  }

  // ------------------------------------------------------------------ panels

  setPanels(list) {
    const seen = new Set();
    let shape = false;
    for (const panel of list) {
      seen.add(panel.id);
      shape = this.mergePanel(panel) || shape;
    }
    for (const id of [...this.panels.keys()]) {
      if (!seen.has(id)) {
        this.panels.delete(id);
        shape = true;
      }
    }
    if (shape) this.emit("panels");
    this.emit("usage");
  }

  upsertPanel(panel) {
    if (this.mergePanel(panel)) this.emit("panels");
    this.emit("usage");
  }

  mergePanel(panel) {
    const old = this.panels.get(panel.id);
    this.panels.set(panel.id, panel);
    this.emit(`panel:${panel.id}`);
    // Its members joining or leaving moves sessions in the tree: a change of shape.
    return !old || panelTag(old) !== panelTag(panel) ||
      memberSessions(old).join() !== memberSessions(panel).join();
  }

  // ------------------------------------------------------------------ page state

  setConnection(state) {
    if (state === this.connection) return;
    this.connection = state;
    this.emit("connection");
  }

  select(kind, id) {
    const same = this.selection && this.selection.kind === kind && this.selection.id === id;
    if (same) return;
    const previous = this.selection;
    this.selection = kind ? { kind, id } : null;
    this.emit("selection");
    if (previous) this.emit(`select:${previous.kind}:${previous.id}`);
    if (kind) this.emit(`select:${kind}:${id}`);
  }

  setFilter(text) {
    if (text === this.filter) return;
    this.filter = text;
    this.emit("filter");
  }

  setCatalog(backends, personas) {
    this.backends = backends;
    this.personas = personas;
    this.emit("catalog");
  }

  // ------------------------------------------------------------------ derived

  /** Sessions in a stable order: newest first. */
  sessionList() {
    return [...this.sessions.values()].sort((a, b) => b.created_at - a.created_at);
  }

  /** The ids the session list shows, in its order (the filter applied). */
  shownSessions() {
    const ids = [];
    for (const info of this.sessionList()) if (this.matches(info)) ids.push(info.id);
    return ids;
  }

  matches(info) {
    const needle = this.filter.trim().toLowerCase();
    if (!needle) return true;
    const hay = [info.id, info.backend, info.persona, tagOf(info), info.status, statusText(info.status)];
    return hay.some((field) => field && String(field).toLowerCase().includes(needle));
  }

  /** Tag → {sessions: [id], panels: [id], total}, tags sorted, "(untagged)" last. A panel's
   * member sessions are not among its tag's `sessions`: they are shown under the panel. */
  tags() {
    const tags = new Map();
    const slot = (tag) => {
      if (!tags.has(tag)) tags.set(tag, { sessions: [], panels: [], total: 0 });
      return tags.get(tag);
    };
    const members = new Set();
    for (const panel of this.panels.values()) {
      const here = slot(panelTag(panel));
      here.panels.push(panel.id);
      here.total += 1;
      for (const id of memberSessions(panel)) members.add(id);
    }
    for (const info of this.sessionList()) {
      const here = slot(tagOf(info));
      here.total += 1;
      if (!members.has(info.id)) here.sessions.push(info.id);
    }
    const names = [...tags.keys()].sort((a, b) => {
      if (a === UNTAGGED) return 1;
      if (b === UNTAGGED) return -1;
      return a.localeCompare(b);
    });
    return names.map((name) => ({ name, ...tags.get(name) }));
  }

  /** Tokens and cost of a tag's sessions (panel members are sessions: not counted twice). */
  tagUsage(tag) {
    const total = { input_tokens: 0, output_tokens: 0, cost_usd: 0 };
    for (const info of this.sessions.values()) {
      if (tagOf(info) !== tag || !info.usage) continue;
      total.input_tokens += info.usage.input_tokens || 0;
      total.output_tokens += info.usage.output_tokens || 0;
      total.cost_usd += info.usage.cost_usd || 0;
    }
    return total;
  }
}

// ------------------------------------------------------------------ formatting

export function formatTokens(usage) {
  if (!usage) return "0 tok";
  const n = (usage.input_tokens || 0) + (usage.output_tokens || 0);
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M tok`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k tok`;
  return `${n} tok`;
}

export function formatCost(usage) {
  const cost = (usage && usage.cost_usd) || 0;
  return cost < 1 ? `$${cost.toFixed(4)}` : `$${cost.toFixed(2)}`;
}

export function formatUsage(usage) {
  return `${formatTokens(usage)} · ${formatCost(usage)}`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}
