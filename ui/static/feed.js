// One open transcript's position in its session's chunk sequence: every chunk shown once,
// in seq order, with no gap — the page's version of client/follow.py.
//
// The rendered chunks are always one contiguous window [oldest, nextSeq). Opening shows the
// tail (inspect, then replay the last TAIL chunks); live chunks below nextSeq are dropped,
// one above it is a gap, filled by replay; live chunks that arrive while a replay is in
// flight are buffered and merged by seq. Scrolling up prepends older pages; the window is
// capped at MAX_RENDERED chunks by dropping the far end. When older pages push the newest
// chunks out, the feed is "detached": live chunks are not rendered until the reader scrolls
// back down and the newer pages are replayed.

export const TAIL = 200;
export const PAGE = 200;
export const MAX_RENDERED = 5000;
const CATCH_UP_PAGE = 1000;
const RETRY_MS = 1000;

/** The single chunks an `agent.chunk` / `agent.chunks` message stands for. */
export function expand(item) {
  if (item.type !== "agent.chunks") return [item];
  const out = new Array(item.texts.length);
  for (let i = 0; i < item.texts.length; i++) {
    out[i] = {
      type: "agent.chunk",
      kind: item.kind,
      text: item.texts[i],
      session_id: item.session_id,
      seq: item.first_seq + i,
      stream: item.stream,
      ts: item.ts,
      turn: item.turn || 0,
    };
  }
  return out;
}

export class Feed {
  /** sink: {reset(), append(chunks), prepend(chunks), dropOldest(beforeSeq),
   *  dropNewest(fromSeq), state({oldest, nextSeq, detached, loading, error})} */
  constructor(request, sessionId, sink) {
    this.request = request;
    this.sid = sessionId;
    this.sink = sink;
    this.oldest = 1;
    this.nextSeq = 0; // 0: not open yet
    this.lastSeq = 0;
    this.detached = false;
    this.busy = false; // a replay toward the tail is in flight
    this.again = false; // another catch-up was asked for meanwhile
    this.loadingOlder = false;
    this.buffer = [];
    this.closed = false;
    this.error = null;
  }

  close() {
    this.closed = true;
  }

  report() {
    if (this.closed) return;
    this.sink.state({
      oldest: this.oldest,
      nextSeq: this.nextSeq,
      detached: this.detached,
      loading: this.busy || this.loadingOlder,
      error: this.error,
    });
  }

  /** Opens at the tail. Also used when the window is too far behind to catch up. */
  async open() {
    this.busy = true;
    this.report();
    try {
      const reply = await this.request({ type: "inspect", session: this.sid });
      if (this.closed) return;
      const last = reply.session.chunks || 0;
      this.sink.reset();
      this.oldest = Math.max(1, last - TAIL + 1);
      this.nextSeq = this.oldest;
      this.detached = false;
      this.error = null;
      await this.pagesToTail(TAIL);
    } catch (err) {
      this.fail(err);
    }
    this.finish();
  }

  /** Replays from nextSeq until the window holds everything the daemon has. */
  async catchUp() {
    if (this.closed || this.nextSeq === 0 || this.detached) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.report();
    try {
      const probe = await this.replay(this.nextSeq, 1);
      if (probe.last_seq - this.nextSeq >= MAX_RENDERED) {
        // Far behind (a long sleep): the tail is what matters; older pages load on scroll.
        this.busy = false;
        this.buffer = [];
        return this.open();
      }
      this.take(probe.chunks);
      await this.pagesToTail(CATCH_UP_PAGE);
    } catch (err) {
      this.fail(err);
    }
    this.finish();
  }

  async pagesToTail(limit) {
    for (;;) {
      const page = await this.replay(this.nextSeq, limit);
      if (this.closed) return;
      const before = this.nextSeq;
      this.take(page.chunks);
      if (this.nextSeq > page.last_seq) return;
      if (this.nextSeq === before) throw new Error(`replay made no progress at seq ${before}`);
    }
  }

  async replay(fromSeq, limit) {
    const page = await this.request({ type: "replay", session: this.sid, from_seq: fromSeq, limit });
    this.lastSeq = Math.max(this.lastSeq, page.last_seq);
    return page;
  }

  /** Appends the chunks that continue the window (drops what it has; stops at a gap). */
  take(items) {
    const fresh = [];
    for (const item of items) {
      for (const chunk of expand(item)) {
        if (chunk.seq === this.nextSeq + fresh.length) fresh.push(chunk);
      }
    }
    if (!fresh.length || this.closed) return;
    this.nextSeq += fresh.length;
    this.sink.append(fresh);
    this.trimOldest();
  }

  trimOldest() {
    const excess = this.nextSeq - this.oldest - MAX_RENDERED;
    if (excess <= 0) return;
    this.oldest += excess;
    this.sink.dropOldest(this.oldest);
  }

  finish() {
    this.busy = false;
    const buffered = this.buffer;
    this.buffer = [];
    if (!this.closed && !this.error && !this.detached) {
      buffered.sort((a, b) => a.seq - b.seq);
      this.take(buffered);
      const gap = buffered.some((chunk) => chunk.seq >= this.nextSeq);
      if (gap || this.again) {
        this.again = false;
        this.catchUp();
        return;
      }
    }
    this.report();
  }

  fail(err) {
    if (this.closed) return;
    this.error = err.code === "disconnected" ? null : String(err.message || err);
    if (err.code !== "disconnected") {
      // A daemon that is restarting answers daemon_unavailable: ask again shortly.
      setTimeout(() => this.resync(), RETRY_MS);
    }
  }

  /** A live `agent.chunk` / `agent.chunks` of this session. */
  onChunks(event) {
    if (this.closed || this.detached || this.nextSeq === 0) return;
    if (event.elided) {
      if (event.seq + event.elided > this.nextSeq) this.catchUp();
      return;
    }
    const chunks = expand(event);
    if (this.busy) {
      for (const chunk of chunks) if (chunk.seq >= this.nextSeq) this.buffer.push(chunk);
      return;
    }
    const first = chunks[0].seq;
    if (first > this.nextSeq) {
      this.buffer.push(...chunks);
      this.catchUp();
      return;
    }
    this.take(chunks);
  }

  /** After the WebSocket reconnected or the daemon came back: replay from nextSeq. */
  resync() {
    if (this.closed) return;
    this.error = null;
    if (this.nextSeq === 0) this.open();
    else this.catchUp();
  }

  /** Prepends the page before the window (the reader scrolled to the top). */
  async loadOlder() {
    if (this.closed || this.loadingOlder || this.oldest <= 1 || this.nextSeq === 0) return;
    this.loadingOlder = true;
    this.report();
    try {
      const from = Math.max(1, this.oldest - PAGE);
      const older = [];
      let want = from;
      while (want < this.oldest) {
        const page = await this.replay(want, this.oldest - want);
        const got = [];
        for (const item of page.chunks) {
          for (const chunk of expand(item)) {
            if (chunk.seq === want + got.length && chunk.seq < this.oldest) got.push(chunk);
          }
        }
        if (!got.length) throw new Error(`replay made no progress at seq ${want}`);
        older.push(...got);
        want += got.length;
      }
      if (!this.closed && older.length) this.prependOlder(older);
    } catch (err) {
      this.error = err.code === "disconnected" ? null : String(err.message || err);
    }
    this.loadingOlder = false;
    this.report();
  }

  prependOlder(older) {
    this.oldest = older[0].seq;
    this.sink.prepend(older);
    const excess = this.nextSeq - this.oldest - MAX_RENDERED;
    if (excess > 0) {
      this.nextSeq -= excess;
      this.detached = true;
      this.buffer = [];
      this.sink.dropNewest(this.nextSeq);
    }
  }

  /** Appends the page after the window (detached, the reader scrolled to the bottom). */
  async loadNewer() {
    if (this.closed || !this.detached || this.busy) return;
    this.busy = true;
    this.report();
    try {
      const page = await this.replay(this.nextSeq, PAGE);
      this.take(page.chunks);
      if (this.nextSeq > page.last_seq) {
        this.detached = false; // caught up: live chunks render again
        this.again = true;
      }
    } catch (err) {
      this.fail(err);
    }
    this.finish();
  }
}
