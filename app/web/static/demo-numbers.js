// The demo's "live numbers" panel: polls the admin endpoints SREs read (gateway connections,
// subscribers, the last catch-up, queue depths) and draws the last few minutes as an SVG chart.

const SVG = 'http://www.w3.org/2000/svg';
const POLL_MS = 3000; // 2 requests per poll: 40 a minute, well inside RATE_LIMIT_REQUESTS=200
const KEEP = 60; // samples on the chart: three minutes
const SERIES = [
  { key: 'connections', label: 'connections' },
  { key: 'subscribers', label: 'subscribers' },
  { key: 'autosaveWaiting', label: 'draft-autosave waiting' },
  { key: 'buildWaiting', label: 'draft-build waiting' },
];
const COLORS = ['#3366cc', '#dc7a00', '#1b7f4b', '#b3261e'];

/**
 * Start polling; returns a function that stops it.
 * @param {{token: () => string, onSample?: (sample: Record<string, number>) => void}} opts
 */
export function startNumbers({ token, onSample }) {
  /** @type {Array<Record<string, number>>} */ const samples = [];
  const note = /** @type {HTMLElement} */ (document.getElementById('numbers-note'));
  const legend = /** @type {HTMLElement} */ (document.getElementById('legend'));
  legend.replaceChildren(...SERIES.map((s, i) => Object.assign(document.createElement('span'), {
    className: `s${i}`, textContent: s.label,
  })));
  let stopped = false;
  const headers = () => ({ authorization: `Bearer ${token()}` });

  async function poll() {
    const [rt, queues] = await Promise.all([
      fetch('/api/realtime/metrics', { headers: headers() }),
      fetch('/api/admin/queues', { headers: headers() }),
    ]);
    if (rt.status === 403 || queues.status === 403) {
      note.textContent = 'Sign in as an admin to see the gateway and queue numbers.';
      return false;
    }
    if (!rt.ok || !queues.ok) {
      note.textContent = `numbers unavailable (HTTP ${rt.ok ? queues.status : rt.status}); retrying`;
      return true;
    }
    const m = await rt.json();
    const q = await queues.json();
    const depth = (/** @type {string} */ name) => (q[name] ?? {});
    const sample = {
      connections: m.activeConnections,
      subscribers: m.totalSubscribers,
      catchupMs: m.lastCatchUp?.durationMs ?? 0,
      catchupEvents: m.lastCatchUp?.eventCount ?? 0,
      autosaveWaiting: depth('draft-autosave').waiting ?? 0,
      buildWaiting: depth('draft-build').waiting ?? 0,
      buildActive: depth('draft-build').active ?? 0,
      failed: (depth('draft-autosave').failed ?? 0) + (depth('draft-build').failed ?? 0),
    };
    samples.push(sample);
    if (samples.length > KEEP) samples.shift();
    note.textContent = 'This API process, polled every 3 s.';
    /** @type {HTMLElement} */ (document.getElementById('chart-box')).hidden = false;
    renderNumbers(sample);
    renderChart(samples);
    onSample?.(sample);
    return true;
  }

  (async () => {
    while (!stopped) {
      let again = true;
      try { again = await poll(); } catch { note.textContent = 'numbers unavailable (API unreachable); retrying'; }
      if (!again) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();
  return () => { stopped = true; };
}

/** @param {Record<string, number>} s */
function renderNumbers(s) {
  const items = [
    ['connections', s.connections], ['subscribers', s.subscribers],
    ['last catch-up', `${s.catchupEvents} ev / ${Math.round(s.catchupMs)} ms`],
    ['autosave waiting', s.autosaveWaiting], ['builds waiting', s.buildWaiting],
    ['builds active', s.buildActive], ['failed jobs', s.failed],
  ];
  const dl = /** @type {HTMLElement} */ (document.getElementById('numbers'));
  dl.replaceChildren(...items.map(([label, value]) => {
    const div = document.createElement('div');
    div.append(Object.assign(document.createElement('dt'), { textContent: label }),
      Object.assign(document.createElement('dd'), { textContent: String(value) }));
    div.dataset.metric = String(label);
    return div;
  }));
}

/** @param {Array<Record<string, number>>} samples */
function renderChart(samples) {
  const svg = /** @type {SVGSVGElement | null} */ (document.getElementById('chart'));
  if (!svg) return;
  const w = 600; const h = 140; const pad = 20;
  const highest = Math.max(0, ...samples.flatMap((s) => SERIES.map((x) => s[x.key] ?? 0)));
  const top = Math.max(4, Math.ceil(highest / 4) * 4); // whole-number gridlines at 0, top/2, top
  const offset = KEEP - samples.length; // newest sample at the right edge
  const x = (/** @type {number} */ i) => pad + ((i + offset) * (w - 2 * pad)) / (KEEP - 1);
  const y = (/** @type {number} */ v) => h - pad - (v / top) * (h - 2 * pad);
  const nodes = [];
  for (const frac of [0, 0.5, 1]) {
    nodes.push(el('line', { x1: pad, x2: w - pad, y1: y(top * frac), y2: y(top * frac), stroke: '#e3e6ee' }));
    nodes.push(el('text', { x: 2, y: y(top * frac) + 4, 'font-size': 10, fill: '#6b7385' }, String(Math.round(top * frac))));
  }
  SERIES.forEach((series, k) => {
    const points = samples.map((s, i) => `${x(i).toFixed(1)},${y(s[series.key] ?? 0).toFixed(1)}`).join(' ');
    nodes.push(el('polyline', { points, fill: 'none', stroke: COLORS[k], 'stroke-width': 2 }));
  });
  svg.replaceChildren(...nodes);
}

/**
 * An SVG element with presentation attributes (not `style`, which the CSP forbids).
 * @param {string} name @param {Record<string, string | number>} attrs @param {string} [text]
 */
function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
}
