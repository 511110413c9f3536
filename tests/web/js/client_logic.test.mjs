// Pure logic of the browser client under `node --test` (run by tests/web/test_client_logic.py).
// The network is stubbed here on purpose: these check ordering and arithmetic; the browser tests
// check the same client against the real API.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createAutosave } from '../../../app/web/static/autosave.js';
import { createRealtime } from '../../../app/web/static/realtime.js';
import { SseParser } from '../../../app/web/static/sse.js';
import { backoffDelay, parseRetryAfter } from '../../../app/web/static/retry.js';

test('backoff doubles, is capped, and its jitter stays in the upper half', () => {
  const policy = { baseMs: 500, capMs: 8000 };
  assert.deepEqual([0, 1, 2, 3, 4, 9].map((a) => backoffDelay(a, policy, () => 1)), [500, 1000, 2000, 4000, 8000, 8000]);
  assert.deepEqual([0, 1, 9].map((a) => backoffDelay(a, policy, () => 0)), [250, 500, 4000]);
});

test('Retry-After: seconds, HTTP dates, junk', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(new Date(10_000 + 4000).toUTCString(), 10_000), 4000);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(null), null);
});

test('SSE parser: messages split across chunks, CRLF, comments, multi-line data', () => {
  const p = new SseParser();
  assert.deepEqual(p.feed('id: 7\nevent: build.st'), []);
  assert.deepEqual(p.feed('arted\ndata: {"a":\ndata: 1}\n\n: heartbeat\r\n\r\nevent: caught_up\r\ndata: {}\r\n\r\n'), [
    { event: 'build.started', data: '{"a":\n1}', id: '7' },
    { event: 'caught_up', data: '{}', id: null },
  ]);
  assert.equal(p.comments, 1);
});

/** A fetch whose answers the test releases one by one. */
function heldFetch() {
  const calls = [];
  const fetch = (url, init) => new Promise((resolve) => calls.push({ body: JSON.parse(init.body), resolve }));
  const answer = (i, status, body, headers = {}) => calls[i].resolve({
    status, json: async () => body, headers: { get: (k) => headers[k.toLowerCase()] ?? null },
  });
  return { calls, fetch, answer };
}
const tick = (ms) => new Promise((r) => setTimeout(r, ms));

test('autosave: one request in flight, newest content wins, baseVersion follows', async () => {
  const net = heldFetch();
  const saver = createAutosave({ token: 't', debounceMs: 20, fetch: net.fetch });
  saver.update({ title: 'T', payload: { body: 'a' } });
  await tick(40);
  assert.equal(net.calls.length, 1);
  saver.update({ title: 'T', payload: { body: 'ab' } });
  saver.update({ title: 'T', payload: { body: 'abc' } });
  await tick(40); // the debounce fired while the first save is in flight: nothing new is sent
  assert.equal(net.calls.length, 1);
  net.answer(0, 202, { draftId: 'd1', version: 1, jobId: 'j' });
  await tick(10);
  assert.equal(net.calls.length, 2);
  assert.deepEqual(net.calls[1].body, { title: 'T', payload: { body: 'abc' }, draftId: 'd1', baseVersion: 1 });
  net.answer(1, 202, { draftId: 'd1', version: 2, jobId: 'j' });
  await tick(10);
  assert.equal(saver.dirty, false);
  assert.equal(saver.version, 2);
  saver.destroy();
});

test('autosave: 429 waits for Retry-After and then sends what was typed meanwhile', async () => {
  const net = heldFetch();
  const statuses = [];
  const saver = createAutosave({ token: 't', debounceMs: 5, fetch: net.fetch, onStatus: (s) => statuses.push(s) });
  saver.update({ title: 'T', payload: { body: 'x' } });
  await tick(20);
  net.answer(0, 429, { error: 'rate_limited' }, { 'retry-after': '1' });
  await tick(10);
  assert.equal(statuses.at(-1).text, 'rate limited, retrying in 1 s');
  saver.update({ title: 'T', payload: { body: 'xy' } });
  await tick(700);
  assert.equal(net.calls.length, 1); // still waiting: the server asked for a second
  await tick(500);
  assert.equal(net.calls.length, 2);
  assert.deepEqual(net.calls[1].body.payload, { body: 'xy' });
  saver.destroy();
});

test('autosave: 409 calls the conflict callback and holds the edits', async () => {
  const net = heldFetch();
  const conflicts = [];
  const saver = createAutosave({ token: 't', draftId: 'd', version: 3, debounceMs: 5, fetch: net.fetch,
    onConflict: (c) => conflicts.push(c) });
  saver.update({ title: 'T', payload: { body: 'mine' } });
  await tick(20);
  net.answer(0, 409, { error: 'version_conflict', detail: 'The draft is at version 5' });
  await tick(10);
  saver.update({ title: 'T', payload: { body: 'mine2' } });
  await tick(20);
  assert.equal(net.calls.length, 1);
  assert.equal(conflicts.length, 1);
  assert.equal(conflicts[0].baseVersion, 3);
  saver.resolveConflict({ version: 5 });
  await tick(10);
  assert.deepEqual(net.calls[1].body, { title: 'T', payload: { body: 'mine2' }, draftId: 'd', baseVersion: 5 });
  saver.destroy();
});

class FakeSocket {
  static last = null;
  constructor(url) { this.url = String(url); this.readyState = 0; this.sent = []; FakeSocket.last = this; }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
  open() { this.readyState = 1; this.onopen(); }
  frame(f) { this.onmessage({ data: JSON.stringify(f) }); }
}

test('realtime: events batches, duplicates dropped, gap resubscribes from the last seq', () => {
  const rt = createRealtime({ token: 't', WebSocket: FakeSocket, fetch: async () => ({ ok: false }) });
  const seen = [];
  rt.subscribe('job:1', { onEvent: (e) => seen.push(e.seq) });
  const ws = FakeSocket.last;
  assert.match(ws.url, /^ws:\/\/localhost\/ws\?token=t$/);
  ws.open();
  assert.deepEqual(ws.sent, [{ op: 'subscribe', channel: 'job:1', sinceSeq: 0 }]);
  ws.frame({ op: 'subscribed', channel: 'job:1', headSeq: 3 });
  ws.frame({ op: 'events', channel: 'job:1', events: [1, 2, 3].map((seq) => ({ seq, type: 'x', data: {}, ts: '' })) });
  ws.frame({ op: 'event', channel: 'job:1', seq: 3, type: 'x', data: {}, ts: '' });
  ws.frame({ op: 'event', channel: 'job:1', seq: 5, type: 'x', data: {}, ts: '' });
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(rt.stats, { duplicates: 1, gaps: 1, reconnects: 0 });
  assert.deepEqual(ws.sent.slice(1), [{ op: 'unsubscribe', channel: 'job:1' }, { op: 'subscribe', channel: 'job:1', sinceSeq: 3 }]);
  rt.close();
});

test('realtime: pings while quiet, drops a silent connection, resumes after 1001 from the last seq', async () => {
  const statuses = [];
  const rt = createRealtime({ token: 't', WebSocket: FakeSocket, pingMs: 20, deadAfterMs: 150,
    backoff: { baseMs: 10, capMs: 10 }, fetch: async () => ({ ok: false }) });
  rt.on('status', (s) => statuses.push(s));
  rt.subscribe('job:2');
  const first = FakeSocket.last;
  first.open();
  first.frame({ op: 'subscribed', channel: 'job:2', headSeq: 0 });
  first.frame({ op: 'event', channel: 'job:2', seq: 1, type: 'x', data: {}, ts: '' });
  await tick(60);
  assert.ok(first.sent.some((f) => f.op === 'ping'));
  await tick(250); // no pong, no event: dead
  const second = FakeSocket.last;
  assert.notEqual(second, first);
  assert.ok(statuses.some((s) => s.code === 4000 && s.state === 'reconnecting'));
  second.open();
  assert.deepEqual(second.sent[0], { op: 'subscribe', channel: 'job:2', sinceSeq: 1 });
  second.frame({ op: 'subscribed', channel: 'job:2', headSeq: 1 });
  second.readyState = 3;
  second.onclose({ code: 1001 });
  assert.match(statuses.at(-1).text, /^server restarting, reconnecting in 1 s$/);
  await tick(30);
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.sent[0], { op: 'subscribe', channel: 'job:2', sinceSeq: 1 });
  rt.close();
});
