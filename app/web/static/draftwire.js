// Draftwire browser client: debounced autosave and resumable realtime channels.
// A dependency-free ES module; import it straight from the API:
//
//   import { createAutosave, createRealtime } from '/static/draftwire.js';
//
// See the README section "Browser client" for the ten-line version and every event it emits.

export { Autosave, createAutosave } from './autosave.js';
export { Realtime, createRealtime } from './realtime.js';
export { SseParser } from './sse.js';
export { backoffDelay, parseRetryAfter } from './retry.js';

/**
 * @typedef {import('./autosave.js').DraftContent} DraftContent
 * @typedef {import('./autosave.js').SaveStatus} SaveStatus
 * @typedef {import('./autosave.js').Conflict} Conflict
 * @typedef {import('./autosave.js').AutosaveOptions} AutosaveOptions
 * @typedef {import('./realtime.js').RealtimeEvent} RealtimeEvent
 * @typedef {import('./realtime.js').ConnectionStatus} ConnectionStatus
 * @typedef {import('./realtime.js').RealtimeOptions} RealtimeOptions
 */
