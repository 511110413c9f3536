// Debounced autosave against `POST /api/autosave` (contract: "Autosave").
//
// One request in flight per draft; whatever was typed last is what gets saved; `baseVersion`
// guards against overwriting newer work (409 -> conflict callback); 429, 503, other 5xx and
// network errors are retried with jittered exponential backoff that honours `Retry-After`.
// Typed content is only let go once a save of it (or of something newer) was accepted.

import { Emitter, apiUrl, backoffDelay, parseRetryAfter, seconds, tokenOf } from './retry.js';

/**
 * @typedef {{title: string, payload: Record<string, unknown>}} DraftContent
 * @typedef {'idle'|'pending'|'saving'|'saved'|'retrying'|'offline'|'conflict'|'error'} SaveState
 * @typedef {object} SaveStatus
 * @property {SaveState} state
 * @property {string} text for a person: "saving", "saved v12", "offline, retrying in 4 s", "conflict"
 * @property {string | null} draftId
 * @property {number | null} version the newest version the server accepted from this client
 * @property {number} [retryInMs] set while a retry is scheduled
 * @property {number} [httpStatus] status of the failed request (0 = network error)
 * @property {string} [detail] the server's sentence, when it sent one
 * @typedef {object} Conflict
 * @property {string | null} draftId
 * @property {number | null} baseVersion the version this client based its edit on
 * @property {string} detail the server's sentence (it names the current version)
 * @property {DraftContent} content what this client still holds, unsaved
 * @typedef {object} AutosaveOptions
 * @property {string | (() => string)} token session token (or a function returning the current one)
 * @property {string} [baseUrl] API origin; default the page's
 * @property {string | null} [draftId] an existing draft; null creates one on the first save
 * @property {number | null} [version] the version the content was loaded at (sent as baseVersion)
 * @property {number} [debounceMs] quiet time after the last change before saving (default 800)
 * @property {import('./retry.js').BackoffPolicy} [backoff] default 1 s doubling to 30 s
 * @property {(status: SaveStatus) => void} [onStatus]
 * @property {(conflict: Conflict) => void} [onConflict]
 * @property {typeof fetch} [fetch]
 * @property {() => number} [random]
 */

const RETRYABLE = new Set([0, 408, 425, 429, 500, 502, 503, 504]);

/** @param {AutosaveOptions} options */
export function createAutosave(options) {
  return new Autosave(options);
}

export class Autosave extends Emitter {
  /** @type {DraftContent | null} */ #latest = null;
  #rev = 0; // bumped by every update()
  #savedRev = 0; // the newest rev the server accepted
  #inFlight = false;
  #again = false; // the debounce fired while a request was in flight
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */ #debounce = null;
  /** @type {ReturnType<typeof setTimeout> | null} */ #retry = null;
  /** @type {SaveState} */ #state = 'idle';
  /** @type {Array<{rev: number, resolve: () => void}>} */ #waiters = [];
  #destroyed = false;

  /** @param {AutosaveOptions} options */
  constructor(options) {
    super();
    this.options = options;
    /** @type {string | null} */ this.draftId = options.draftId ?? null;
    /** @type {number | null} */ this.version = options.version ?? null;
    this.debounceMs = options.debounceMs ?? 800;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (options.onStatus) this.on('status', options.onStatus);
    if (options.onConflict) this.on('conflict', options.onConflict);
    this.#online = () => { if (this.#retry) this.#retryNow(); };
    globalThis.addEventListener?.('online', this.#online);
  }

  /** @type {typeof fetch} */ #fetch;
  /** @type {() => void} */ #online;

  /** @returns {SaveState} */
  get state() { return this.#state; }

  /** True while something typed has not been accepted by the server yet. */
  get dirty() { return this.#rev > this.#savedRev; }

  /**
   * The newest content; saved once typing pauses for `debounceMs`.
   * @param {DraftContent} content
   */
  update(content) {
    this.#latest = content;
    this.#rev += 1;
    if (this.#state === 'conflict' || this.#retry) return; // held until resolved / sent by the retry
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => { this.#debounce = null; this.#fire(); }, this.debounceMs);
    if (!this.#inFlight && this.#state !== 'pending') this.#status('pending', 'unsaved changes');
  }

  /** Save now (skip the pause); resolves once everything typed so far is accepted. */
  flush() {
    const rev = this.#rev;
    if (rev <= this.#savedRev) return Promise.resolve();
    const done = new Promise((resolve) => this.#waiters.push({ rev, resolve: () => resolve(undefined) }));
    if (this.#debounce) { clearTimeout(this.#debounce); this.#debounce = null; }
    if (this.#retry) this.#retryNow();
    else if (this.#state !== 'conflict') this.#fire();
    return done;
  }

  /**
   * After a conflict: base the held edits on `version` (the server's newest, after the user chose
   * to keep theirs), optionally replacing them with merged `content`, and save again.
   * @param {{version: number, content?: DraftContent}} resolution
   */
  resolveConflict({ version, content }) {
    this.version = version;
    if (content) { this.#latest = content; this.#rev += 1; }
    this.#state = 'pending';
    this.#fire();
  }

  /**
   * Follow a newer version saved elsewhere (another tab, another device): drop nothing typed
   * here, just base the next save on it. Call it after loading that version's content.
   * @param {{version: number, draftId?: string}} at
   */
  adopt({ version, draftId }) {
    if (draftId) this.draftId = draftId;
    if (this.version === null || version > this.version) this.version = version;
    if (this.#state === 'conflict' && !this.dirty) this.#status('saved', `saved v${this.version}`);
  }

  /** Stop timers and listeners (edits not yet saved stay unsaved: call flush() first). */
  destroy() {
    this.#destroyed = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#retry) clearTimeout(this.#retry);
    globalThis.removeEventListener?.('online', this.#online);
  }

  #fire() {
    if (this.#destroyed || this.#latest === null || this.#state === 'conflict') return;
    if (this.#inFlight) { this.#again = true; return; }
    if (this.#rev <= this.#savedRev) return;
    void this.#send();
  }

  #retryNow() {
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    this.#fire();
  }

  async #send() {
    const rev = this.#rev;
    const content = /** @type {DraftContent} */ (this.#latest);
    /** @type {Record<string, unknown>} */
    const body = { title: content.title, payload: content.payload };
    if (this.draftId) body.draftId = this.draftId;
    if (this.version !== null && this.draftId) body.baseVersion = this.version;
    this.#inFlight = true;
    this.#status('saving', 'saving');
    /** @type {Response | null} */ let res = null;
    /** @type {any} */ let data = null;
    try {
      res = await this.#fetch(new URL('/api/autosave', apiUrl(this.options.baseUrl ?? '')), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenOf(this.options.token)}` },
        body: JSON.stringify(body),
      });
      data = await res.json().catch(() => null);
    } catch {
      res = null; // network error: the server never answered (or the answer was cut off)
    } finally {
      this.#inFlight = false;
    }
    if (this.#destroyed) return;
    const status = res ? res.status : 0;
    if (status === 202) return this.#accepted(rev, data);
    if (status === 409) return this.#conflict(data);
    if (RETRYABLE.has(status)) return this.#scheduleRetry(status, res, data);
    // Anything else (400, 401, 404, 413, 422) will fail the same way again: keep the content,
    // say why, and try again only when the user changes something.
    const why = status === 401 ? 'sign in again' : data?.detail ?? `HTTP ${status}`;
    this.#status('error', `not saved: ${why}`, { httpStatus: status, detail: data?.detail });
  }

  /** @param {number} rev @param {any} data */
  #accepted(rev, data) {
    this.draftId = data.draftId;
    this.version = data.version;
    this.#savedRev = Math.max(this.#savedRev, rev);
    this.#attempt = 0;
    this.#status('saved', `saved v${data.version}`);
    this.emit('saved', { draftId: data.draftId, version: data.version, jobId: data.jobId });
    this.#waiters = this.#waiters.filter((w) => (w.rev <= this.#savedRev ? (w.resolve(), false) : true));
    // Typed while this one was in flight: the debounce is either still counting (it will fire)
    // or fired meanwhile (#again): then send the newest content right away.
    if (this.#again && !this.#debounce) { this.#again = false; this.#fire(); }
    this.#again = false;
  }

  /** @param {any} data */
  #conflict(data) {
    this.#again = false;
    this.#status('conflict', 'conflict', { httpStatus: 409, detail: data?.detail });
    this.emit('conflict', {
      draftId: this.draftId,
      baseVersion: this.version,
      detail: data?.detail ?? 'The draft was changed elsewhere.',
      content: /** @type {DraftContent} */ (this.#latest),
    });
  }

  /** @param {number} status @param {Response | null} res @param {any} data */
  #scheduleRetry(status, res, data) {
    const hinted = parseRetryAfter(res?.headers.get('retry-after'));
    const delay = Math.max(backoffDelay(this.#attempt, this.options.backoff, this.options.random), hinted ?? 0);
    this.#attempt += 1;
    const why = status === 0 ? 'offline' : status === 429 ? 'rate limited' : 'server unavailable';
    this.#status(status === 0 ? 'offline' : 'retrying', `${why}, retrying in ${seconds(delay)}`, {
      retryInMs: delay, httpStatus: status, detail: data?.detail,
    });
    this.#retry = setTimeout(() => { this.#retry = null; this.#fire(); }, delay);
  }

  /**
   * @param {SaveState} state
   * @param {string} text
   * @param {Partial<SaveStatus>} [extra]
   */
  #status(state, text, extra = {}) {
    this.#state = state;
    this.emit('status', { state, text, draftId: this.draftId, version: this.version, ...extra });
  }
}
