// The panel view: members, threaded messages with reactions, decisions with positions and
// consensus, a participation chart, the reply network, and the say / decide / end controls.
// Messages are keyed by id, so a full re-read after a reconnect can never duplicate one.

import { useEffect, useRef, useState } from "./vendor/htm-preact-standalone.module.js";
import { describeError, html, useStoreKeys } from "./hooks.js";
import { formatUsage, shortId } from "./store.js";
import { ParticipationChart, ReplyNetwork, parseDecisions, participation, replyEdges } from "./panel_charts.js";

const SHOW_PAGE = 1000;
const DECIDE_TIMEOUT_MS = 3_700_000; // a human may take up to an hour (human_wait_s)

/** Loads the panel's messages and keeps them current from its events. */
class PanelState {
  constructor(app, panelId, changed) {
    this.app = app;
    this.id = panelId;
    this.changed = changed;
    this.messages = new Map();
    this.decisions = new Map(); // proposal → Decision from panel.decision / panel_decided
    this.error = "";
    this.closed = false;
  }

  async load() {
    try {
      let start = 0;
      for (;;) {
        const reply = await this.app.request({ type: "panel_show", panel: this.id, start, limit: SHOW_PAGE });
        if (this.closed) return;
        this.app.store.upsertPanel(reply.panel);
        for (const message of reply.messages) this.messages.set(message.id, message);
        start += reply.messages.length;
        if (!reply.messages.length || start >= reply.total) break;
      }
      this.error = "";
    } catch (err) {
      this.error = describeError(err);
    }
    this.changed();
  }

  onEvent(event) {
    switch (event.type) {
      case "panel.message":
        this.messages.set(event.message.id, event.message);
        break;
      case "panel.decision":
        this.decisions.set(event.decision.proposal, event.decision);
        break;
      default:
        return;
    }
    this.changed();
  }

  ordered() {
    return [...this.messages.values()].sort((a, b) => a.ts - b.ts || a.turn - b.turn);
  }
}

/** Turns and usage from the message log: PanelInfo's own figures change only with
 * panel.updated, the log with every message. */
function tally(messages) {
  const said = new Map();
  const usage = { input_tokens: 0, output_tokens: 0, cost_usd: 0 };
  let turns = 0;
  for (const m of messages) {
    if (m.participant === "system" || m.type === "system") continue;
    if (m.usage) {
      usage.input_tokens += m.usage.input_tokens || 0;
      usage.output_tokens += m.usage.output_tokens || 0;
      usage.cost_usd += m.usage.cost_usd || 0;
    }
    if (m.interrupted) continue;
    turns++;
    said.set(m.participant, (said.get(m.participant) || 0) + 1);
  }
  return { said, usage, turns };
}

function Member({ member, speaking, said }) {
  const spec = member.spec;
  return html`<li data-testid="panel-member" class=${`member${speaking ? " speaking" : ""}${member.active ? "" : " left"}`}>
    <strong class="member-name">${spec.name}</strong>
    <span class="member-persona">${spec.persona || spec.kind}</span>
    <span class="member-role">${spec.role}</span>
    ${spec.stance ? html`<span class=${`member-stance stance-${spec.stance}`}>${spec.stance}</span>` : null}
    <span class="muted">${Math.max(member.messages, said)} msgs</span>
    ${speaking ? html`<span class="speaking-mark">speaking…</span>` : null}
    ${member.active ? null : html`<span class="muted">left</span>`}
  </li>`;
}

function Reactions({ reactions }) {
  if (!reactions || !reactions.length) return null;
  const counts = new Map();
  for (const r of reactions) counts.set(r.emoji, (counts.get(r.emoji) || 0) + 1);
  return html`<span class="reactions" aria-label="Reactions">
    ${[...counts].map(([emoji, n]) => html`<span class="reaction">${emoji} ${n}</span>`)}
  </span>`;
}

function Message({ message, byParent }) {
  const kids = byParent.get(message.id) || [];
  const classes = ["message", `type-${message.type}`, message.participant === "system" ? "system" : "", message.interrupted ? "interrupted" : ""];
  return html`<li data-testid="panel-message" data-message=${message.id} class=${classes.join(" ")}>
    <div class="message-head">
      <strong>${message.participant}</strong>
      ${message.type !== "conversation" ? html`<span class="badge">${message.type}</span>` : null}
      <span class="muted">round ${message.round} · turn ${message.turn}</span>
      ${message.usage ? html`<span class="muted">${formatUsage(message.usage)}</span>` : null}
      <${Reactions} reactions=${message.reactions} />
    </div>
    <div class="message-text">${message.text}</div>
    ${kids.length
      ? html`<ul class="thread" aria-label=${`Replies to ${message.participant}`}>
          ${kids.map((kid) => html`<${Message} key=${kid.id} message=${kid} byParent=${byParent} />`)}
        </ul>`
      : null}
  </li>`;
}

function Thread({ messages }) {
  const ids = new Set(messages.map((m) => m.id));
  const byParent = new Map();
  const roots = [];
  for (const m of messages) {
    if (m.reply_to && ids.has(m.reply_to) && m.reply_to !== m.id) {
      if (!byParent.has(m.reply_to)) byParent.set(m.reply_to, []);
      byParent.get(m.reply_to).push(m);
    } else {
      roots.push(m);
    }
  }
  return html`<ol class="messages" aria-label="Messages">
    ${roots.map((m) => html`<${Message} key=${m.id} message=${m} byParent=${byParent} />`)}
  </ol>`;
}

function DecisionCard({ decision }) {
  const level = decision.level.replace(/_/g, " ");
  return html`<li data-testid="panel-decision" class=${`decision level-${decision.level}`}>
    <p class="proposal"><strong>Proposal:</strong> ${decision.proposal}</p>
    <p class="consensus">Consensus: <strong class="consensus-level">${level}</strong>
      ${decision.agreement !== null ? html` (agreement ${(decision.agreement * 100).toFixed(0)}%)` : null}</p>
    <ul class="positions" aria-label="Positions">
      ${decision.votes.map((v) => html`<li class=${`position position-${v.position}`}>
        <strong>${v.participant}</strong>: ${v.position.replace(/_/g, " ")}${v.reason ? html` — <span class="muted">${v.reason}</span>` : null}
      </li>`)}
    </ul>
  </li>`;
}

function Controls({ app, panelId, state, ended }) {
  const box = useRef(null);
  const [note, setNote] = useState("");
  const run = (make, done, timeout) => async () => {
    const text = box.current.value.trim();
    const request = make(text);
    if (!request) return setNote("write something first");
    setNote("…");
    try {
      const reply = await app.request(request, timeout);
      if (reply.type === "panel_decided") {
        state.decisions.set(reply.decision.proposal, reply.decision);
        state.changed();
      }
      if (text && request.type !== "panel_control") box.current.value = "";
      setNote(done);
    } catch (err) {
      setNote(describeError(err));
    }
  };
  const say = run((text) => text && { type: "panel_say", panel: panelId, text }, "posted");
  const decide = run((text) => text && { type: "panel_decide", panel: panelId, proposal: text }, "decided", DECIDE_TIMEOUT_MS);
  const end = run(() => ({ type: "panel_control", panel: panelId, action: "end" }), "ended");
  const onKey = (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      say();
    }
  };
  return html`<div class="panel-controls">
    <label class="visually-hidden" for="panel-say">Say to the panel, or a proposal to vote on</label>
    <textarea id="panel-say" data-testid="panel-say" ref=${box} rows="2" onKeyDown=${onKey}
      placeholder="Say something (Ctrl+Enter), or write a proposal and put it to a vote"></textarea>
    <div class="buttons">
      <button type="button" class="btn primary" data-action="panel-say" disabled=${ended} onClick=${say}>Say</button>
      <button type="button" class="btn" data-action="panel-decide" disabled=${ended} onClick=${decide}>Put to a vote</button>
      <button type="button" class="btn danger" data-action="panel-end" disabled=${ended} onClick=${end}>End panel</button>
      <span class="note" role="status">${note}</span>
    </div>
  </div>`;
}

export function PanelPane({ app, panelId }) {
  const store = app.store;
  useStoreKeys(store, [`panel:${panelId}`]);
  const [, setTick] = useState(0);
  const stateRef = useRef(null);
  if (!stateRef.current || stateRef.current.id !== panelId) {
    stateRef.current = new PanelState(app, panelId, () => setTick((n) => n + 1));
  }
  const state = stateRef.current;
  useEffect(() => {
    app.openPanel(state);
    state.load();
    return () => {
      state.closed = true;
      app.openPanel(null);
    };
  }, [panelId]);
  const panel = store.panels.get(panelId);
  const messages = state.ordered();
  const decisions = parseDecisions(messages, state.decisions);
  const members = panel ? panel.members : [];
  const ended = panel ? panel.status === "completed" || panel.status === "archived" : false;
  const speaking = panel && panel.speaking;
  const figures = tally(messages);
  const usage = panel && panel.usage.cost_usd > figures.usage.cost_usd ? panel.usage : figures.usage;
  return html`<section class="pane panel-pane" data-testid="panel-view" data-panel=${panelId} aria-label="Panel">
    <header class="pane-header">
      <h2><span aria-hidden="true">🗣️ </span>${panel ? panel.config.topic : `Panel ${shortId(panelId)}`}</h2>
      ${panel
        ? html`<p class="meta">
            <span class="status-text">${panel.status}</span>
            <span>${panel.config.type.replace(/_/g, " ")}</span>
            <span>round ${panel.round} · ${Math.max(panel.messages, figures.turns)} messages</span>
            <span class="usage" data-testid="panel-usage">${formatUsage(usage)}</span>
            ${panel.stop_reason ? html`<span>stopped: ${panel.stop_reason.replace(/_/g, " ")}</span>` : null}
          </p>`
        : null}
      ${state.error ? html`<p class="error" role="alert">${state.error}</p>` : null}
    </header>
    <div class="panel-body">
      <div class="panel-main">
        <h3>Members</h3>
        <ul class="members">${members.map((m) => html`<${Member} key=${m.spec.name} member=${m} speaking=${speaking === m.spec.name}
          said=${figures.said.get(m.spec.name) || 0} />`)}</ul>
        <h3>Discussion</h3>
        <${Thread} messages=${messages} />
        <${Controls} app=${app} panelId=${panelId} state=${state} ended=${ended} />
      </div>
      <aside class="panel-side" aria-label="Panel analytics">
        <h3>Decisions</h3>
        ${decisions.length
          ? html`<ul class="decisions">${decisions.map((d, i) => html`<${DecisionCard} key=${i} decision=${d} />`)}</ul>`
          : html`<p class="muted">No decision yet.</p>`}
        <h3>Participation (words)</h3>
        <${ParticipationChart} rows=${participation(messages, members)} />
        <h3>Who replied to whom</h3>
        <${ReplyNetwork} edges=${replyEdges(messages)} />
      </aside>
    </div>
  </section>`;
}
