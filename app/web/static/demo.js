// The /demo page: sign in, edit a draft with a live "saved" indicator, follow other tabs' saves
// (`draft.saved` on `draft:<id>`), build the draft and watch its sections stream in (`job:<id>`).
// Page options: ?draft=<id>  ?transport=auto|ws|sse  ?debounce=<ms>
//
// `window.__draftwire` records what the page saw, for people poking in the console and for the
// browser tests (tests/web): events, save statuses, conflicts, input times.

import { createAutosave, createRealtime } from './draftwire.js';
import { startNumbers } from './demo-numbers.js';

const TOKEN_KEY = 'draftwire.demo.token';
const params = new URLSearchParams(location.search);
const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

const hook = {
  ready: false, signedIn: false, draftId: /** @type {string | null} */ (null), transport: '',
  /** @type {Array<{channel: string, seq: number, type: string, data: any}>} */ events: [],
  /** @type {Array<any>} */ statuses: [], /** @type {Array<any>} */ connection: [],
  /** @type {Array<any>} */ conflicts: [], /** @type {number[]} */ inputs: [],
  build: { jobId: '', sections: /** @type {string[]} */ ([]), state: '' },
  /** @type {any} */ autosave: null, /** @type {any} */ realtime: null,
};
Object.assign(window, { __draftwire: hook });

let token = '';
/** @type {import('./draftwire.js').Autosave} */ let autosave;
/** @type {import('./draftwire.js').Realtime} */ let realtime;
let jobChannel = '';
let draftChannel = '';

// --- sign-in ---------------------------------------------------------------------------------------
async function init() {
  const config = await fetch('/demo/config').then((r) => r.json()).catch(() => ({ devSignIn: false }));
  if (config.devSignIn) { $('dev-form').hidden = false; $('signin-note').hidden = true; }
  $('dev-form').addEventListener('submit', async (/** @type {Event} */ e) => {
    e.preventDefault();
    const res = await fetch('/demo/token', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: $('dev-user').value.trim(), admin: $('dev-admin').checked }),
    });
    const body = await res.json();
    if (!res.ok) { $('signin-note').hidden = false; $('signin-note').textContent = body.detail; return; }
    signIn(body.token);
  });
  $('paste-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    signIn($('paste-token').value.trim());
  });
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) await signIn(saved);
  hook.ready = true;
}

/** @param {string} t */
async function signIn(t) {
  const probe = await fetch('/api/drafts?limit=1', { headers: { authorization: `Bearer ${t}` } });
  if (probe.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    $('signin-note').hidden = false;
    $('signin-note').textContent = 'That token is invalid or expired: sign in again.';
    return;
  }
  token = t;
  localStorage.setItem(TOKEN_KEY, t);
  const claims = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  $('who').textContent = `signed in as ${claims.sub}${claims.role === 'admin' ? ' (admin)' : ''}`;
  $('signin').hidden = true;
  $('app').hidden = false;
  startRealtime();
  await openDraft(params.get('draft'));
  if (claims.role === 'admin') startNumbers({ token: () => token });
  hook.signedIn = true;
}

// --- realtime ----------------------------------------------------------------------------------
function startRealtime() {
  const transport = /** @type {'auto'|'ws'|'sse'} */ (params.get('transport') ?? 'auto');
  realtime = createRealtime({ token: () => token, transport });
  hook.realtime = realtime;
  hook.transport = realtime.transport;
  realtime.on('status', (s) => {
    hook.transport = s.transport;
    hook.connection.push({ ...s, at: performance.now() });
    $('conn').dataset.state = s.state;
    $('conn').textContent = s.state === 'open' ? `live (${s.transport})` : s.text;
  });
  realtime.on('event', (e) => {
    hook.events.push({ channel: e.channel, seq: e.seq, type: e.type, data: e.data });
    logLine(`${e.channel} #${e.seq} ${e.type} ${JSON.stringify(e.data)}`);
  });
  realtime.on('error', (f) => logLine(`error ${f.code}: ${f.detail}`));
}

// --- editor ------------------------------------------------------------------------------------
/** @param {string | null} draftId */
async function openDraft(draftId) {
  let version = null;
  if (draftId) {
    const res = await fetch(`/api/drafts/${encodeURIComponent(draftId)}`, { headers: auth() });
    if (res.ok) {
      const draft = await res.json();
      showContent(draft);
      version = draft.version;
    } else {
      logLine(`draft ${draftId} not found; a new one starts with the first save`);
      draftId = null;
    }
  }
  autosave?.destroy();
  autosave = createAutosave({ token: () => token, draftId, version, debounceMs: Number(params.get('debounce') ?? 800) });
  hook.autosave = autosave;
  autosave.on('status', (s) => {
    hook.statuses.push({ ...s, at: performance.now() });
    $('save-status').dataset.state = s.state;
    $('save-status').dataset.version = s.version ?? '';
    $('save-status').textContent = s.text;
  });
  autosave.on('saved', (s) => followDraft(s.draftId));
  autosave.on('conflict', (c) => {
    hook.conflicts.push({ ...c, at: performance.now() });
    $('conflict-text').textContent = `Not saved: ${c.detail}`;
    $('conflict').hidden = false;
  });
  if (draftId) {
    followDraft(draftId);
    $('save-status').dataset.state = 'saved';
    $('save-status').textContent = `saved v${version}`;
  }
}

/** @param {string} draftId */
function followDraft(draftId) {
  hook.draftId = draftId;
  $('draft-id').textContent = draftId;
  $('build').disabled = false;
  $('other-tab').hidden = false;
  $('other-tab').href = `/demo?draft=${draftId}`;
  if (params.get('draft') !== draftId) {
    params.set('draft', draftId);
    history.replaceState(null, '', `?${params}`);
  }
  if (draftChannel === `draft:${draftId}`) return;
  if (draftChannel) realtime.unsubscribe(draftChannel);
  draftChannel = `draft:${draftId}`;
  realtime.subscribe(draftChannel, { onEvent: onDraftEvent });
}

/** Another tab or device saved: follow along unless this tab holds unsaved edits. */
async function onDraftEvent(/** @type {import('./draftwire.js').RealtimeEvent} */ e) {
  if (e.type !== 'draft.saved' || e.data.version <= (autosave.version ?? 0)) return;
  if (autosave.dirty || autosave.state === 'conflict') {
    $('remote').textContent = `v${e.data.version} was saved elsewhere; your unsaved edits will conflict`;
    return;
  }
  const res = await fetch(`/api/drafts/${hook.draftId}`, { headers: auth() });
  if (!res.ok || autosave.dirty) return;
  const draft = await res.json();
  if (draft.version <= (autosave.version ?? 0)) return;
  showContent(draft);
  autosave.adopt({ version: draft.version });
  $('remote').textContent = `v${draft.version} saved in another tab: loaded`;
}

/** @param {{title: string, payload: Record<string, unknown>}} draft */
function showContent(draft) {
  $('title').value = draft.title;
  $('body').value = payloadToText(draft.payload);
}

function edited() {
  hook.inputs.push(performance.now());
  $('remote').textContent = '';
  autosave.update({ title: $('title').value || 'Untitled', payload: textToPayload($('body').value) });
}

/**
 * Lines starting with "## " begin a section; each section is one top-level payload key (so a
 * build renders one section per heading). Text before the first heading is the "body" key.
 * @param {string} text
 * @returns {Record<string, string>}
 */
export function textToPayload(text) {
  /** @type {Record<string, string>} */ const payload = {};
  let title = 'body';
  /** @type {string[]} */ let lines = [];
  const flush = () => {
    if (title === 'body' && lines.length === 0) return;
    let key = title;
    for (let n = 2; key in payload; n += 1) key = `${title} (${n})`;
    payload[key] = lines.join('\n');
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('## ')) { flush(); title = line.slice(3).trim() || 'untitled'; lines = []; }
    else lines.push(line);
  }
  flush();
  return Object.keys(payload).length ? payload : { body: '' };
}

/** @param {Record<string, unknown>} payload */
export function payloadToText(payload) {
  return Object.entries(payload).map(([k, v], i) => {
    const value = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
    return k === 'body' && i === 0 ? value : `## ${k}\n${value}`;
  }).join('\n');
}

// --- conflict ----------------------------------------------------------------------------------
async function latest() {
  const res = await fetch(`/api/drafts/${hook.draftId}`, { headers: auth() });
  return res.json();
}

$('take-theirs').addEventListener('click', async () => {
  const draft = await latest();
  showContent(draft);
  $('conflict').hidden = true;
  autosave.destroy();
  await openDraft(draft.draftId);
});
$('keep-mine').addEventListener('click', async () => {
  const draft = await latest();
  $('conflict').hidden = true;
  autosave.resolveConflict({ version: draft.version });
});

// --- build -------------------------------------------------------------------------------------
$('build').addEventListener('click', async () => {
  await autosave.flush();
  const res = await fetch(`/api/drafts/${hook.draftId}/build`, { method: 'POST', headers: auth() });
  const body = await res.json();
  if (!res.ok) { $('build-status').textContent = `build refused: ${body.detail}`; return; }
  if (jobChannel) realtime.unsubscribe(jobChannel);
  jobChannel = `job:${body.jobId}`;
  hook.build = { jobId: body.jobId, sections: [], state: 'queued' };
  $('sections').replaceChildren();
  $('build-status').textContent = 'queued';
  realtime.subscribe(jobChannel, { onEvent: onBuildEvent });
});

function onBuildEvent(/** @type {import('./draftwire.js').RealtimeEvent} */ e) {
  const list = $('sections');
  if (e.type === 'build.started') { // a retried attempt starts over
    list.replaceChildren();
    hook.build.sections = [];
    $('build-progress').max = Math.max(1, e.data.sections);
    $('build-progress').value = 0;
    hook.build.state = 'running';
  } else if (e.type === 'build.section.completed') {
    hook.build.sections[e.data.index - 1] = e.data.title;
    const li = Object.assign(document.createElement('li'), { textContent: e.data.title, className: 'done' });
    li.dataset.index = String(e.data.index);
    list.append(li);
    list.scrollTop = list.scrollHeight;
    $('build-progress').value = e.data.index;
  } else if (e.type === 'build.completed') {
    hook.build.state = 'completed';
    $('build-progress').value = $('build-progress').max;
  } else if (e.type === 'build.failed') {
    hook.build.state = 'failed';
  }
  $('build-status').textContent = hook.build.state === 'completed' ? `completed, ${e.data.bytes} bytes`
    : hook.build.state === 'failed' ? `failed: ${e.data.error}`
      : `${hook.build.sections.filter(Boolean).length} / ${$('build-progress').max} sections`;
}

// --- page --------------------------------------------------------------------------------------
function auth() { return { authorization: `Bearer ${token}` }; }

/** @param {string} text */
function logLine(text) {
  const li = Object.assign(document.createElement('li'), { textContent: `${new Date().toLocaleTimeString()} ${text}` });
  $('log').prepend(li);
  while ($('log').children.length > 200) $('log').lastChild.remove();
}

$('body').addEventListener('input', edited);
$('title').addEventListener('input', edited);
$('new-draft').addEventListener('click', async () => {
  params.delete('draft');
  history.replaceState(null, '', `?${params}`);
  $('body').value = '';
  hook.draftId = null;
  if (draftChannel) realtime.unsubscribe(draftChannel);
  draftChannel = '';
  $('build').disabled = true;
  await openDraft(null);
});
void init();
