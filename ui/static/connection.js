// The WebSocket to `agentplex ui`'s bridge: reconnects with backoff, matches replies to
// requests by id, and hands every other frame (hello, event, daemon) to listeners.

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 30000;

/** A request the bridge or the daemon refused; `code` is the stable wire error code. */
export class RequestError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

export class Connection {
  constructor(url) {
    this.url = url;
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    this.backoff = BACKOFF_FIRST_MS;
    this.open = false;
    this.closedByUs = false;
  }

  /** Calls `fn(frame)` for each frame that is not a reply, and `fn({op: "open"|"closed"})`. */
  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  connect() {
    this.closedByUs = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.open = true;
      this.backoff = BACKOFF_FIRST_MS;
      this.emit({ op: "open" });
    });
    socket.addEventListener("message", (ev) => this.receive(ev.data));
    socket.addEventListener("close", () => this.closed(socket));
    // An error is always followed by close: reconnecting happens there.
    socket.addEventListener("error", () => {});
  }

  close() {
    this.closedByUs = true;
    if (this.socket) this.socket.close();
  }

  /** Sends a wire request (tagged by "type"); resolves with the daemon's reply, rejects
   * with a RequestError for an error reply or a bridge error. */
  request(request, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.open) {
      return Promise.reject(new RequestError("disconnected", "not connected to agentplex ui"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError("timeout", `no reply to ${request.type} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ op: "request", id, request }));
    });
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      console.warn("agentplex ui: unreadable frame", err);
      return;
    }
    if (frame.op === "reply") {
      this.settle(frame);
    } else {
      this.emit(frame);
    }
  }

  settle(frame) {
    const waiter = this.pending.get(frame.id);
    if (!waiter) return; // timed out already
    this.pending.delete(frame.id);
    clearTimeout(waiter.timer);
    if (frame.error) {
      waiter.reject(new RequestError(frame.error.code, frame.error.message));
    } else if (frame.reply && frame.reply.type === "error") {
      waiter.reject(new RequestError(frame.reply.code, frame.reply.message));
    } else {
      waiter.resolve(frame.reply);
    }
  }

  closed(socket) {
    if (socket !== this.socket) return;
    this.open = false;
    for (const [, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new RequestError("disconnected", "connection to agentplex ui lost"));
    }
    this.pending.clear();
    this.emit({ op: "closed" });
    if (this.closedByUs) return;
    // Jitter spreads the reconnects of several tabs after the UI restarts.
    const delay = this.backoff * (0.75 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    setTimeout(() => this.connect(), delay);
  }

  emit(frame) {
    for (const fn of this.listeners) {
      try {
        fn(frame);
      } catch (err) {
        console.error("agentplex ui: listener failed", err);
      }
    }
  }
}

/** The bridge's address on the server that served this page. */
export function bridgeUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}
