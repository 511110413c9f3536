// Shared pieces of the Draftwire client: jittered backoff, Retry-After, a tiny event emitter.
// Pure and dependency-free, so `node --test` can check them (tests/web/test_client_logic.py).

/**
 * @typedef {object} BackoffPolicy
 * @property {number} [baseMs] first delay before jitter (ms)
 * @property {number} [capMs] no delay is longer than this (ms)
 * @property {number} [factor] growth per attempt
 */

/**
 * Delay before retry number `attempt` (0 = first retry): exponential, capped, with "equal jitter"
 * (a random point in the upper half), so a crowd of clients spreads out yet none waits 0 ms.
 * @param {number} attempt
 * @param {BackoffPolicy} [policy]
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, policy = {}, random = Math.random) {
  const { baseMs = 1000, capMs = 30000, factor = 2 } = policy;
  const ceiling = Math.min(capMs, baseMs * factor ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * `Retry-After` as milliseconds: delta-seconds or an HTTP date; null when absent or unreadable.
 * @param {string | null | undefined} value
 * @param {number} [now] epoch ms
 * @returns {number | null}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value.trim() === '') return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}

/**
 * Seconds for a person: "retrying in 4 s".
 * @param {number} ms
 * @returns {string}
 */
export function seconds(ms) {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

/** A minimal synchronous event emitter (EventTarget would wrap every payload in an Event). */
export class Emitter {
  /** @type {Map<string, Set<(detail: any) => void>>} */
  #handlers = new Map();

  /**
   * Call `fn(detail)` for every `type` event; returns a function that stops it.
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type)?.add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  /**
   * @param {string} type
   * @param {any} detail
   */
  emit(type, detail) {
    for (const fn of [...(this.#handlers.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (err) {
        // A broken listener must not stop saving or delivery; surface it without throwing.
        setTimeout(() => { throw err; });
      }
    }
  }
}

/**
 * Where the API is: `baseUrl` or the page's own origin.
 * @param {string} baseUrl
 * @returns {URL}
 */
export function apiUrl(baseUrl) {
  const origin = globalThis.location ? globalThis.location.origin : 'http://localhost';
  return new URL(baseUrl || origin, origin);
}

/**
 * The token now: a string, or a function returning one (so a refreshed token is used on retry).
 * @param {string | (() => string)} token
 * @returns {string}
 */
export function tokenOf(token) {
  return typeof token === 'function' ? token() : token;
}
