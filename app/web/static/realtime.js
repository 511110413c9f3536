// Resumable realtime channels over `GET /ws`, or SSE (`GET /api/events`) where WebSockets are
// unavailable (contract: "Realtime").
//
// Every subscription remembers the last seq it delivered; after any reconnect it resubscribes
// from there, and anything at or below it is dropped, so each seq reaches the app exactly once
// and in order. `events` batch frames count as one `event` frame per element.

import { Emitter, apiUrl, backoffDelay, parseRetryAfter, seconds, tokenOf } from './retry.js';
import { readSse } from './sse.js';

/**
 * @typedef {{channel: string, seq: number, type: string, data: any, ts: string}} RealtimeEvent
 * @typedef {'connecting'|'open'|'reconnecting'|'idle'|'unauthorized'|'closed'} ConnectionState
 * @typedef {object} ConnectionStatus
 * @property {ConnectionState} state
 * @property {string} text for a person: "connected (ws)", "server restarting, reconnecting in 1 s"
 * @property {'ws'|'sse'} transport
 * @property {number} [code] WebSocket close code that ended the last connection
 * @property {number} [retryInMs]
 * @typedef {object} RealtimeOptions
 * @property {string | (() => string)} token
 * @property {string} [baseUrl] API origin; default the page's
 * @property {'auto'|'ws'|'sse'} [transport] auto: WebSocket, SSE when WebSockets are missing or never open
 * @property {import('./retry.js').BackoffPolicy} [backoff] default 500 ms doubling to 8 s
 * @property {number} [pingMs] heartbeat period (default 25 s; the server closes sockets idle 300 s)
 * @property {number} [deadAfterMs] no frame for this long means the connection is dead (default 40 s)
 * @property {number} [idleCloseMs] close the socket this long after the last unsubscribe (default 30 s)
 * @property {typeof WebSocket} [WebSocket]
 * @property {typeof fetch} [fetch]
 * @property {() => number} [random]
 * @typedef {object} Sub
 * @property {string} channel
 * @property {number} lastSeq
 * @property {boolean} fresh no event delivered yet: the first may jump (history pruned by retention)
 * @property {boolean} resyncing a gap was seen; events are dropped until the resubscribe lands
 * @property {boolean} failed refused for good (not_found, forbidden): not resubscribed
 * @property {Set<(event: RealtimeEvent) => void>} handlers
 * @property {AbortController | null} stream SSE only
 * @property {number} attempt SSE only: reconnects since the stream last worked
 * @property {number} lastAlive SSE only
 * @property {ReturnType<typeof setTimeout> | null} timer SSE only
 */

const WS_FAILURES_BEFORE_SSE = 3;

/** @param {RealtimeOptions} options */
export function createRealtime(options) {
  return new Realtime(options);
}

export class Realtime extends Emitter {
  /** @type {Map<string, Sub>} */ #subs = new Map();
  /** @type {'ws'|'sse'} */ #transport;
  /** @type {WebSocket | null} */ #ws = null;
  #attempt = 0;
  #everOpened = false;
  #failures = 0;
  #lastFrameAt = 0;
  #lastPingAt = 0;
  #closed = false;
  /** @type {ReturnType<typeof setTimeout> | null} */ #timer = null;
  /** @type {ReturnType<typeof setInterval> | null} */ #heartbeat = null;
  /** @type {ReturnType<typeof setTimeout> | null} */ #idle = null;
  /** Counters an app or a test can read: duplicates dropped, gaps resynced, reconnects. */
  stats = { duplicates: 0, gaps: 0, reconnects: 0 };

  /** @param {RealtimeOptions} options */
  constructor(options) {
    super();
    this.options = options;
    this.pingMs = options.pingMs ?? 25000;
    this.deadAfterMs = options.deadAfterMs ?? 40000;
    this.#WS = options.WebSocket ?? globalThis.WebSocket;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const want = options.transport ?? 'auto';
    this.#transport = want === 'sse' || typeof this.#WS !== 'function' ? 'sse' : 'ws';
    this.#online = () => { if (this.#timer && this.#transport === 'ws') this.#reconnectNow(); };
    globalThis.addEventListener?.('online', this.#online);
  }

  /** @type {typeof WebSocket} */ #WS;
  /** @type {typeof fetch} */ #fetch;
  /** @type {() => void} */ #online;

  /** @returns {'ws'|'sse'} */
  get transport() { return this.#transport; }

  /**
   * Follow `channel` from after `sinceSeq`; `onEvent` gets every later seq exactly once, in order.
   * @param {string} channel `job:<id>` or `draft:<id>`
   * @param {{sinceSeq?: number, onEvent?: (event: RealtimeEvent) => void}} [opts]
   */
  subscribe(channel, { sinceSeq = 0, onEvent } = {}) {
    let sub = this.#subs.get(channel);
    if (!sub) {
      sub = { channel, lastSeq: sinceSeq, fresh: true, resyncing: false, failed: false, handlers: new Set(),
        stream: null, attempt: 0, lastAlive: 0, timer: null };
      this.#subs.set(channel, sub);
      if (this.#idle) { clearTimeout(this.#idle); this.#idle = null; }
      if (this.#transport === 'sse') void this.#openStream(sub);
      else if (this.#ws?.readyState === 1) this.#sendSubscribe(sub);
      else this.#connect();
    }
    if (onEvent) sub.handlers.add(onEvent);
    const s = sub;
    return { channel, get lastSeq() { return s.lastSeq; }, unsubscribe: () => this.unsubscribe(channel) };
  }

  /** @param {string} channel */
  unsubscribe(channel) {
    const sub = this.#subs.get(channel);
    if (!sub) return;
    this.#subs.delete(channel);
    this.#stopStream(sub);
    if (this.#ws?.readyState === 1) this.#send({ op: 'unsubscribe', channel });
    if (this.#subs.size === 0 && this.#ws) {
      this.#idle = setTimeout(() => { this.#idle = null; this.#ws?.close(1000, 'idle'); }, this.options.idleCloseMs ?? 30000);
    }
  }

  /** Close everything for good. */
  close() {
    this.#closed = true;
    for (const sub of this.#subs.values()) this.#stopStream(sub);
    for (const t of [this.#timer, this.#idle]) if (t) clearTimeout(t);
    this.#stopHeartbeat();
    this.#ws?.close(1000, 'client closed');
    globalThis.removeEventListener?.('online', this.#online);
    this.#status('closed', 'closed');
  }

  // --- delivery ----------------------------------------------------------------------------------
  /** @param {string} channel @param {{seq: number, type: string, data: any, ts: string}} e */
  #deliver(channel, e) {
    const sub = this.#subs.get(channel);
    if (!sub || sub.resyncing) return;
    if (e.seq <= sub.lastSeq) { this.stats.duplicates += 1; return; }
    if (e.seq > sub.lastSeq + 1 && !sub.fresh) { this.stats.gaps += 1; this.#resync(sub); return; }
    sub.fresh = false;
    sub.lastSeq = e.seq;
    const event = { channel, seq: e.seq, type: e.type, data: e.data, ts: e.ts };
    for (const fn of sub.handlers) fn(event);
    this.emit('event', event);
  }

  /** @param {Sub} sub */
  #resync(sub) {
    if (this.#transport === 'sse') { this.#stopStream(sub); void this.#openStream(sub); return; }
    sub.resyncing = true;
    this.#send({ op: 'unsubscribe', channel: sub.channel });
    this.#sendSubscribe(sub);
  }

  /** @param {any} f a server frame */
  #onControl(f) {
    const sub = f.channel ? this.#subs.get(f.channel) : undefined;
    if (f.op === 'subscribed') {
      if (sub) { sub.resyncing = false; sub.attempt = 0; }
      this.#attempt = 0; // the server is back and serving: the next outage starts from base
    } else if (f.op === 'error' && sub && ['not_found', 'forbidden', 'max_subscriptions'].includes(f.code)) {
      sub.failed = true;
    }
    if (f.op !== 'pong') this.emit(f.op, f);
  }

  // --- WebSocket ---------------------------------------------------------------------------------
  #connect() {
    if (this.#closed || this.#ws || this.#timer || this.#transport !== 'ws') return;
    if (![...this.#subs.values()].some((s) => !s.failed)) return;
    const url = apiUrl(this.options.baseUrl ?? '');
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.pathname = '/ws';
    url.search = `?token=${encodeURIComponent(tokenOf(this.options.token))}`;
    /** @type {WebSocket} */ let ws;
    try {
      ws = new this.#WS(url);
    } catch {
      ws = /** @type {WebSocket} */ (/** @type {unknown} */ ({ readyState: 3, close() {} }));
      this.#ws = ws;
      this.#onClose(ws, 1006);
      return;
    }
    this.#ws = ws;
    this.#status('connecting', 'connecting');
    ws.onopen = () => {
      this.#everOpened = true;
      this.#lastFrameAt = Date.now();
      for (const sub of this.#subs.values()) this.#sendSubscribe(sub);
      this.#startHeartbeat();
      this.#status('open', 'connected (ws)');
    };
    ws.onmessage = (m) => {
      this.#lastFrameAt = Date.now();
      const f = JSON.parse(m.data);
      if (f.op === 'event') this.#deliver(f.channel, f);
      else if (f.op === 'events') for (const e of f.events) this.#deliver(f.channel, e);
      else this.#onControl(f);
    };
    ws.onclose = (e) => this.#onClose(ws, e.code);
  }

  /** @param {WebSocket} ws @param {number} code */
  #onClose(ws, code) {
    if (this.#ws !== ws) return;
    this.#ws = null;
    this.#stopHeartbeat();
    for (const sub of this.#subs.values()) sub.resyncing = false;
    if (this.#closed) return;
    if (code === 1008) {
      this.#status('unauthorized', 'sign in again: the server refused the token or origin', { code });
      return;
    }
    if (this.#subs.size === 0) { this.#status('idle', 'idle (no subscriptions)', { code }); return; }
    if (!this.#everOpened) this.#failures += 1;
    if (this.options.transport !== 'ws' && !this.#everOpened && this.#failures >= WS_FAILURES_BEFORE_SSE) {
      void this.#fallBackIfServerUp();
    }
    const delay = backoffDelay(this.#attempt, this.options.backoff ?? { baseMs: 500, capMs: 8000 }, this.options.random);
    this.#attempt += 1;
    this.stats.reconnects += 1;
    const why = code === 1001 ? 'server restarting' : code === 1013 ? 'server busy' : 'connection lost';
    this.#status('reconnecting', `${why}, reconnecting in ${seconds(delay)}`, { code, retryInMs: delay });
    this.#timer = setTimeout(() => { this.#timer = null; this.#connect(); }, delay);
  }

  #reconnectNow() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#connect();
  }

  /** WebSockets never opened, yet plain HTTP works: a proxy is blocking them. Use SSE. */
  async #fallBackIfServerUp() {
    try {
      const res = await this.#fetch(new URL('/healthz', apiUrl(this.options.baseUrl ?? '')), { cache: 'no-store' });
      if (!res.ok || this.#everOpened || this.#transport === 'sse') return;
    } catch {
      return; // the server is down, not the WebSocket path: keep trying WebSocket
    }
    this.#transport = 'sse';
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    for (const sub of this.#subs.values()) void this.#openStream(sub);
  }

  /** @param {Sub} sub */
  #sendSubscribe(sub) {
    if (!sub.failed) this.#send({ op: 'subscribe', channel: sub.channel, sinceSeq: sub.lastSeq });
  }

  /** @param {object} frame */
  #send(frame) {
    if (this.#ws?.readyState === 1) this.#ws.send(JSON.stringify(frame));
  }

  #startHeartbeat() {
    this.#lastPingAt = Date.now();
    this.#heartbeat = setInterval(() => {
      const now = Date.now();
      const ws = this.#ws;
      if (!ws) return;
      if (now - this.#lastFrameAt > this.deadAfterMs) {
        // No pong, no event: the path is dead even if TCP has not noticed. Do not wait for the
        // close handshake, which may never complete.
        ws.onclose = null;
        ws.close(4000, 'heartbeat timeout');
        this.#onClose(ws, 4000);
      } else if (now - this.#lastPingAt >= this.pingMs) {
        this.#lastPingAt = now;
        this.#send({ op: 'ping' });
      }
    }, Math.min(this.pingMs, 5000));
  }

  #stopHeartbeat() {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  // --- SSE ---------------------------------------------------------------------------------------
  /** @param {Sub} sub */
  async #openStream(sub) {
    if (this.#closed || sub.failed || this.#subs.get(sub.channel) !== sub) return;
    const ctrl = new AbortController();
    sub.stream = ctrl;
    /** @type {number | null} */ let hinted = null;
    const watchdog = setInterval(() => { if (Date.now() - sub.lastAlive > this.deadAfterMs) ctrl.abort(); }, 5000);
    try {
      const url = new URL('/api/events', apiUrl(this.options.baseUrl ?? ''));
      url.searchParams.set('channel', sub.channel);
      sub.lastAlive = Date.now();
      const res = await this.#fetch(url, {
        headers: { authorization: `Bearer ${tokenOf(this.options.token)}`, accept: 'text/event-stream',
          'last-event-id': String(sub.lastSeq) },
        cache: 'no-store', signal: ctrl.signal,
      });
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        if (res.status === 401) {
          this.#status('unauthorized', 'sign in again: the server refused the token');
          sub.failed = true;
        } else if ([403, 404, 422].includes(res.status)) {
          sub.failed = true;
          this.emit('error', { op: 'error', code: body?.error ?? 'not_found', detail: body?.detail, channel: sub.channel });
        }
        hinted = parseRetryAfter(res.headers.get('retry-after'));
      } else {
        this.#status('open', 'connected (sse)');
        await readSse(res, (m) => this.#onSse(sub, m), () => { sub.lastAlive = Date.now(); });
      }
    } catch {
      // network error, or aborted: by the watchdog (reconnect below) or by us (stream replaced)
    } finally {
      clearInterval(watchdog);
    }
    if (sub.stream !== ctrl || sub.failed || this.#closed) return;
    sub.stream = null;
    const delay = Math.max(hinted ?? 0,
      backoffDelay(sub.attempt, this.options.backoff ?? { baseMs: 500, capMs: 8000 }, this.options.random));
    sub.attempt += 1;
    this.stats.reconnects += 1;
    this.#status('reconnecting', `stream ended, reconnecting in ${seconds(delay)}`, { retryInMs: delay });
    sub.timer = setTimeout(() => { sub.timer = null; void this.#openStream(sub); }, delay);
  }

  /** @param {Sub} sub @param {import('./sse.js').SseMessage} m */
  #onSse(sub, m) {
    const f = JSON.parse(m.data);
    if (['subscribed', 'caught_up', 'error'].includes(m.event)) this.#onControl({ op: m.event, ...f });
    else this.#deliver(sub.channel, f);
  }

  /** @param {Sub} sub */
  #stopStream(sub) {
    if (sub.timer) clearTimeout(sub.timer);
    sub.timer = null;
    const ctrl = sub.stream;
    sub.stream = null;
    ctrl?.abort();
  }

  /**
   * @param {ConnectionState} state
   * @param {string} text
   * @param {Partial<ConnectionStatus>} [extra]
   */
  #status(state, text, extra = {}) {
    this.emit('status', { state, text, transport: this.#transport, ...extra });
  }
}
