// The transcript view: a header (who, status, tokens and cost), the log of chunks, and the
// send box. The log's children are managed here directly, not by Preact: live chunks are
// queued and appended once per animation frame, old chunk nodes are never touched again,
// and at most MAX_RENDERED of them stay in the DOM (see feed.js).

import { useEffect, useRef, useState } from "./vendor/htm-preact-standalone.module.js";
import { Feed } from "./feed.js";
import { renderChunk, supersede } from "./chunks.js";
import { describeError, html, useStoreKeys } from "./hooks.js";
import { formatUsage, personaIcon, shortId, statusText } from "./store.js";

const STICK_PX = 48;
const FALLBACK_MS = 100;

function button(testid, label) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = "btn load-more";
  node.dataset.testid = testid;
  node.textContent = label;
  node.hidden = true;
  return node;
}

/** The DOM side of a Feed: applies its appends, prepends and trims in order, batched. */
export class TranscriptLog {
  constructor(host, sessionId, actions) {
    this.actions = actions;
    this.ops = [];
    this.scheduled = false;
    this.ready = false;
    this.feed = null;
    this.log = document.createElement("div");
    this.log.className = "log";
    this.log.dataset.testid = "transcript";
    this.log.dataset.session = sessionId;
    this.log.setAttribute("role", "log");
    // Streamed tokens are not announced one by one; the status region says what matters.
    this.log.setAttribute("aria-live", "off");
    this.log.setAttribute("aria-label", `Transcript of session ${shortId(sessionId)}`);
    this.log.tabIndex = 0;
    // Whether the view follows the tail, kept by scroll events: a frame's flush then reads
    // no layout before it appends (one forced layout per frame, by the scroll to the end).
    this.stuck = true;
    this.log.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.hidden = () => this.onHidden();
    document.addEventListener("visibilitychange", this.hidden);
    this.older = button("load-older", "Load older");
    this.newer = button("load-newer", "Load newer");
    this.older.addEventListener("click", () => this.feed && this.feed.loadOlder());
    this.newer.addEventListener("click", () => this.feed && this.feed.loadNewer());
    this.log.append(this.older, this.newer);
    host.append(this.log);
    this.observer = new IntersectionObserver((entries) => this.seen(entries), { root: this.log });
    this.observer.observe(this.older);
    this.observer.observe(this.newer);
  }

  destroy() {
    document.removeEventListener("visibilitychange", this.hidden);
    this.observer.disconnect();
    this.ops = [];
    this.log.remove();
  }

  onScroll() {
    const log = this.log;
    this.stuck = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
  }

  seen(entries) {
    if (!this.ready || !this.feed) return;
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      if (entry.target === this.older) this.feed.loadOlder();
      if (entry.target === this.newer) this.feed.loadNewer();
    }
  }

  // ---------------------------------------------------------------- the Feed's sink

  reset() {
    this.ops = [];
    this.ready = false;
    while (this.older.nextElementSibling !== this.newer) this.older.nextElementSibling.remove();
  }

  append(chunks) {
    this.queue(() => this.doAppend(chunks));
  }

  prepend(chunks) {
    this.queue(() => this.doPrepend(chunks));
  }

  dropOldest(beforeSeq) {
    this.queue(() => {
      let node = this.older.nextElementSibling;
      while (node !== this.newer && Number(node.dataset.seq) < beforeSeq) {
        const next = node.nextElementSibling;
        node.remove();
        node = next;
      }
    });
  }

  dropNewest(fromSeq) {
    this.queue(() => {
      let node = this.newer.previousElementSibling;
      while (node !== this.older && Number(node.dataset.seq) >= fromSeq) {
        const prev = node.previousElementSibling;
        node.remove();
        node = prev;
      }
    });
  }

  state({ oldest, detached, loading, error }) {
    this.queue(() => {
      this.older.hidden = oldest <= 1;
      this.newer.hidden = !detached;
      this.older.textContent = loading ? "Loading…" : `Load older (before #${oldest})`;
      this.log.setAttribute("aria-busy", loading ? "true" : "false");
      this.log.classList.toggle("failed", Boolean(error));
      if (error) this.log.dataset.error = error;
      else delete this.log.dataset.error;
      if (!loading && !this.ready) {
        this.ready = true;
        this.stuck = true;
        this.log.scrollTop = this.log.scrollHeight;
      }
    });
  }

  // ---------------------------------------------------------------- batching

  queue(op) {
    this.ops.push(op);
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      if (!this.scheduled) return;
      this.scheduled = false;
      this.flush();
    };
    requestAnimationFrame(run);
    // A hidden tab gets no animation frames: keep the DOM current anyway (a timer per batch
    // only then: at 60 batches a second it costs a visible page a task each).
    if (document.hidden) setTimeout(run, FALLBACK_MS);
  }

  /** The tab was hidden with a batch waiting for a frame that will not come. */
  onHidden() {
    if (document.hidden && this.scheduled) {
      this.scheduled = false;
      this.flush();
    }
  }

  flush() {
    const ops = this.ops;
    this.ops = [];
    for (const op of ops) op();
    if (this.stuck && this.ready) this.log.scrollTop = this.log.scrollHeight;
  }

  build(chunks) {
    const fragment = document.createDocumentFragment();
    const nodes = chunks.map((chunk) => renderChunk(chunk, this.actions));
    fragment.append(...nodes);
    return { fragment, nodes };
  }

  doAppend(chunks) {
    const { fragment, nodes } = this.build(chunks);
    this.log.insertBefore(fragment, this.newer);
    for (const node of nodes) supersede(node);
  }

  doPrepend(chunks) {
    const before = this.log.scrollHeight;
    const { fragment, nodes } = this.build(chunks);
    this.older.after(fragment);
    for (const node of nodes) supersede(node);
    this.log.scrollTop += this.log.scrollHeight - before;
  }
}

function TranscriptHeader({ app, sessionId }) {
  useStoreKeys(app.store, [`session:${sessionId}`]);
  const info = app.store.sessions.get(sessionId);
  if (!info) return html`<header class="pane-header"><h2>Session ${shortId(sessionId)}</h2></header>`;
  return html`<header class="pane-header">
    <h2>
      <span class="persona-icon" aria-hidden="true">${personaIcon(info)}</span>
      ${info.persona || info.backend} <code>${shortId(info.id)}</code>
    </h2>
    <p class="meta">
      <span class=${`status-text status-${info.status}`}>${statusText(info.status)}</span>
      <span>${info.backend}${info.model ? ` · ${info.model}` : ""}</span>
      <span class="usage" data-testid="session-usage">${formatUsage(info.usage)}</span>
      <span>${info.turns} ${info.turns === 1 ? "turn" : "turns"}</span>
      ${info.queued ? html`<span>${info.queued} queued</span>` : null}
    </p>
  </header>`;
}

function SendBox({ app, sessionId }) {
  const [note, setNote] = useState("");
  const box = useRef(null);
  const send = async () => {
    const message = box.current.value;
    if (!message.trim()) return;
    try {
      const reply = await app.request({ type: "send", session: sessionId, message });
      box.current.value = "";
      setNote(reply.queued ? `queued (${reply.queued} waiting)` : "sent");
    } catch (err) {
      setNote(describeError(err));
    }
  };
  const onKey = (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      send();
    }
  };
  return html`<form class="send" onSubmit=${(ev) => (ev.preventDefault(), send())}>
    <label class="visually-hidden" for="send-box">Message to the session</label>
    <textarea id="send-box" data-testid="send-box" ref=${box} rows="2" onKeyDown=${onKey}
      placeholder="Message… (Ctrl+Enter sends; queued while a turn runs)"></textarea>
    <button class="btn primary" type="submit" data-action="send">Send</button>
    <span class="note" role="status">${note}</span>
  </form>`;
}

export function TranscriptPane({ app, sessionId }) {
  const host = useRef(null);
  useEffect(() => {
    const actions = {
      permit: (allow, requestId) => {
        const request = { type: "permit", session: sessionId, allow };
        if (requestId) request.request_id = requestId;
        return app.request(request);
      },
    };
    const log = new TranscriptLog(host.current, sessionId, actions);
    const feed = new Feed(app.request, sessionId, log);
    log.feed = feed;
    app.openFeed(feed);
    feed.open();
    return () => {
      feed.close();
      app.openFeed(null);
      log.destroy();
    };
  }, [sessionId]);
  return html`<section class="pane transcript-pane" aria-label="Transcript">
    <${TranscriptHeader} app=${app} sessionId=${sessionId} />
    <div class="log-host" ref=${host}></div>
    <${SendBox} app=${app} sessionId=${sessionId} />
  </section>`;
}
