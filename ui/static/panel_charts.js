// The panel's figures, computed from its message log in the page: words per member (an SVG
// bar chart), who replied to whom (an SVG graph and a list), and the decisions recorded in
// the log's "Decision on: …" system messages, enriched by panel.decision events.

import { html } from "./hooks.js";

function speaks(message) {
  return message.participant !== "system" && message.type !== "system" && !message.interrupted;
}

function words(text) {
  const parts = (text || "").trim().split(/\s+/);
  return parts[0] === "" ? 0 : parts.length;
}

/** [{name, words}] for every member (silent ones too), then anyone else who spoke. */
export function participation(messages, members) {
  const totals = new Map(members.map((m) => [m.spec.name, 0]));
  for (const m of messages) {
    if (!speaks(m)) continue;
    totals.set(m.participant, (totals.get(m.participant) || 0) + words(m.text));
  }
  return [...totals].map(([name, n]) => ({ name, words: n }));
}

export function ParticipationChart({ rows }) {
  const max = Math.max(1, ...rows.map((r) => r.words));
  const bar = 22;
  const labelW = 110;
  const width = 360;
  const height = Math.max(bar, rows.length * bar);
  const summary = rows.map((r) => `${r.name}: ${r.words} words`).join(", ");
  return html`<svg data-testid="participation-chart" class="chart" role="img"
      aria-label=${`Words per member: ${summary || "nobody spoke yet"}`}
      viewBox=${`0 0 ${width} ${height}`} width="100%" preserveAspectRatio="xMinYMin meet">
    ${rows.map((r, i) => {
      const w = ((width - labelW - 50) * r.words) / max;
      const y = i * bar;
      return html`<g class="bar-row" data-member=${r.name}>
        <text x="0" y=${y + 15} class="chart-label">${r.name}</text>
        <rect x=${labelW} y=${y + 4} width=${Math.max(w, 1)} height=${bar - 8} rx="3" class="bar" />
        <text x=${labelW + w + 6} y=${y + 15} class="chart-value">${r.words}</text>
      </g>`;
    })}
  </svg>`;
}

/** [{source, target, count}]: `source` replied to a message of `target`. */
export function replyEdges(messages) {
  const byId = new Map(messages.map((m) => [m.id, m]));
  const counts = new Map();
  for (const m of messages) {
    if (!speaks(m)) continue;
    const parent = m.reply_to && byId.get(m.reply_to);
    const targets = parent ? [parent.participant] : m.mentions || [];
    for (const target of targets) {
      if (target === m.participant) continue;
      const key = `${m.participant}\u0000${target}`;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
  }
  return [...counts].map(([key, count]) => {
    const [source, target] = key.split("\u0000");
    return { source, target, count };
  });
}

export function ReplyNetwork({ edges }) {
  const names = [...new Set(edges.flatMap((e) => [e.source, e.target]))];
  const size = 220;
  const r = 80;
  const at = new Map(names.map((name, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, names.length) - Math.PI / 2;
    return [name, { x: size / 2 + r * Math.cos(a), y: size / 2 + r * Math.sin(a) }];
  }));
  return html`<div data-testid="reply-network" class="network">
    ${edges.length
      ? html`<svg class="chart" role="img" aria-label="Reply network" viewBox=${`0 0 ${size} ${size}`}
            width="100%" preserveAspectRatio="xMidYMid meet">
          ${edges.map((e) => {
            const a = at.get(e.source);
            const b = at.get(e.target);
            return html`<line x1=${a.x} y1=${a.y} x2=${b.x} y2=${b.y} class="edge"
              stroke-width=${Math.min(6, 1 + e.count)} />`;
          })}
          ${names.map((name) => {
            const p = at.get(name);
            return html`<g class="net-node"><circle cx=${p.x} cy=${p.y} r="6" />
              <text x=${p.x} y=${p.y - 10} text-anchor="middle" class="chart-label">${name}</text></g>`;
          })}
        </svg>
        <ul class="edges">
          ${edges.map((e) => html`<li>${e.source} → ${e.target} <span class="muted">×${e.count}</span></li>`)}
        </ul>`
      : html`<p class="muted">No replies or mentions yet.</p>`}
  </div>`;
}

const OUTCOME = /^Decision on: ([\s\S]*?)\nConsensus: ([a-z ]+) \(agreement ([0-9.]+)\) — ([\s\S]*)$/;

function parseVotes(text) {
  if (text.trim() === "no votes") return [];
  return text.split("; ").map((part) => {
    const cut = part.lastIndexOf(": ");
    return { participant: part.slice(0, cut), position: part.slice(cut + 2).trim(), reason: "" };
  });
}

/** The decisions, oldest first: each outcome message, with the event's votes and reasons
 * when the page saw the event; decisions seen only as events (not yet logged) last. */
export function parseDecisions(messages, fromEvents) {
  const out = [];
  const used = new Set();
  for (const m of messages) {
    if (m.participant !== "system") continue;
    const match = OUTCOME.exec(m.text);
    if (!match) continue;
    const proposal = match[1];
    const known = fromEvents.get(proposal);
    if (known) {
      used.add(proposal);
      out.push(known);
      continue;
    }
    out.push({
      proposal,
      level: match[2].replace(/ /g, "_"),
      agreement: Number(match[3]),
      votes: parseVotes(match[4]),
    });
  }
  for (const [proposal, decision] of fromEvents) if (!used.has(proposal)) out.push(decision);
  return out;
}
