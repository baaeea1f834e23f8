// One chunk → one DOM element, built directly (no framework): a transcript appends
// thousands of these, and an element once built is never rendered again.
// Every element carries data-seq and data-kind, and its visible text in `.chunk-text`.

import { formatCost } from "./store.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function base(tag, chunk, extra) {
  const node = el(tag, `chunk ${extra || ""}`.trim());
  node.dataset.seq = String(chunk.seq);
  node.dataset.kind = chunk.kind;
  if (chunk.stream === "stderr") node.classList.add("stderr");
  if (chunk.is_error) node.classList.add("error");
  return node;
}

function firstLine(text, max = 80) {
  const line = (text || "").split("\n", 1)[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function details(chunk, extra, label, body) {
  const node = base("details", chunk, extra);
  const summary = el("summary", "chunk-summary");
  summary.append(el("span", "chunk-label", label));
  node.append(summary, body);
  return node;
}

function textBlock(chunk) {
  if (chunk.partial) {
    // A streamed delta: shown inline as it arrives, hidden when the whole text follows.
    const node = base("span", chunk, `delta ${chunk.kind}-delta`);
    node.append(el("span", "chunk-text", chunk.text));
    return node;
  }
  const node = base("div", chunk, "text");
  node.append(el("div", "chunk-text", chunk.text));
  return node;
}

function thinking(chunk) {
  if (chunk.partial) return textBlock(chunk);
  return details(chunk, "thinking", "💭 Thinking", el("div", "chunk-text", chunk.text));
}

function toolUse(chunk) {
  const body = el("div", "tool-body");
  body.append(el("div", "chunk-text", chunk.text));
  if (chunk.tool_input !== undefined && chunk.tool_input !== null) {
    body.append(el("pre", "tool-input", JSON.stringify(chunk.tool_input, null, 2)));
  }
  const label = `🔧 ${chunk.tool_name || "tool"}  ${firstLine(chunk.text, 60)}`;
  return details(chunk, "tool", label, body);
}

function toolResult(chunk) {
  const label = `${chunk.is_error ? "⚠️ Tool error" : "↳ Result"}  ${firstLine(chunk.text, 60)}`;
  return details(chunk, "tool-result", label, el("pre", "chunk-text", chunk.text));
}

export function usageText(usage) {
  if (!usage) return "";
  let tokens = `${usage.input_tokens || 0} in / ${usage.output_tokens || 0} out tokens`;
  if (usage.cached_tokens) tokens += ` (${usage.cached_tokens} cached)`;
  const parts = [tokens];
  parts.push(formatCost(usage));
  if (usage.duration_ms) parts.push(`${(usage.duration_ms / 1000).toFixed(1)} s`);
  return parts.join(" · ");
}

function result(chunk) {
  // The result's text repeats the turn's reply: folded away, the figures stay in view.
  const node = base("div", chunk, "result");
  node.append(el("span", "result-mark", chunk.is_error ? "✖ Turn failed" : "✔ Turn done"));
  if (chunk.usage) node.append(el("span", "usage", ` · ${usageText(chunk.usage)}`));
  if (chunk.text) {
    const more = el("details", "result-text");
    more.append(el("summary", "", "result text"), el("div", "chunk-text", chunk.text));
    node.append(more);
  }
  return node;
}

function error(chunk) {
  const node = base("div", chunk, "error");
  node.append(el("span", "error-mark", "✖ Error: "));
  node.append(el("span", "chunk-text", chunk.text));
  return node;
}

function permission(chunk, actions) {
  const node = base("div", chunk, "permission");
  node.setAttribute("role", "group");
  node.setAttribute("aria-label", "Permission request");
  node.append(el("span", "permission-mark", "🔐 Needs permission: "));
  node.append(el("span", "chunk-text", chunk.text));
  const bar = el("div", "permission-actions");
  const allow = el("button", "btn primary", "Allow");
  allow.dataset.action = "allow";
  const deny = el("button", "btn danger", "Deny");
  deny.dataset.action = "deny";
  const outcome = el("span", "permission-outcome");
  outcome.setAttribute("role", "status");
  const answer = async (yes) => {
    allow.disabled = deny.disabled = true;
    try {
      await actions.permit(yes, chunk.request_id);
      outcome.textContent = yes ? "allowed" : "denied";
      node.classList.add("answered");
    } catch (err) {
      outcome.textContent = `could not answer: ${err.message}`;
      allow.disabled = deny.disabled = false;
    }
  };
  allow.addEventListener("click", () => answer(true));
  deny.addEventListener("click", () => answer(false));
  bar.append(allow, deny, outcome);
  node.append(bar);
  return node;
}

function raw(chunk) {
  // Lines of plain output: inline, so a fragment (partial) and the rest of its line that
  // follows in the next chunk read as one line; a whole line ends with a break (CSS).
  const node = base("span", chunk, chunk.partial ? "raw partial" : "raw");
  node.append(el("span", "chunk-text", chunk.text));
  return node;
}

function system(chunk) {
  const node = base("div", chunk, "system");
  node.append(el("span", "chunk-text", chunk.text));
  return node;
}

/** The element for one chunk; `actions.permit(allow, requestId)` answers a permission. */
export function renderChunk(chunk, actions) {
  switch (chunk.kind) {
    case "text":
      return textBlock(chunk);
    case "thinking":
      return thinking(chunk);
    case "tool_use":
      return toolUse(chunk);
    case "tool_result":
      return toolResult(chunk);
    case "result":
      return result(chunk);
    case "error":
      return error(chunk);
    case "permission_request":
      return permission(chunk, actions);
    case "raw":
      return raw(chunk);
    default:
      return system(chunk);
  }
}

/** Hides the streamed deltas a whole text or thinking chunk repeats. */
export function supersede(node) {
  const kind = node.dataset.kind;
  if ((kind !== "text" && kind !== "thinking") || node.classList.contains("delta")) return;
  let prev = node.previousElementSibling;
  while (prev && prev.classList.contains("delta") && prev.dataset.kind === kind) {
    prev.hidden = true;
    prev = prev.previousElementSibling;
  }
}
