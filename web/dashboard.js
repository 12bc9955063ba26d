// natter's live dashboard: reads this node's /metrics every second, keeps
// the last few minutes of scrapes, and draws the original design's three
// panels on canvases — throughput in vs out, consumer lag and batches in
// flight, the p99 latency breakdown. Rates and quantiles are computed here
// the way Prometheus computes rate() and histogram_quantile(), over a
// sliding window of WINDOW_S seconds. No library: the page loads nothing but
// its own files (the CSP allows only 'self').
//
// For tests and for the curious, window.dashboard holds every series drawn
// (dashboard.series(panel) → {key: [[t, value|null], …]}), the newest values
// (dashboard.latest(panel)), and each panel's <figure> carries data-points:
// how many non-empty points it draws.

const POLL_MS = 1000;
const WINDOW_S = 5;
const SPAN_S = 300; // the most the charts show (they start at a minute and grow)
const MIN_SPAN_S = 60;
const KEEP_S = SPAN_S + WINDOW_S + 5; // scrapes kept

const LATENCY = {
  store: 'natter_store_batch_duration_seconds',
  broadcast: 'natter_broadcast_duration_seconds',
  loop: 'natter_loop_duration_seconds',
  e2e: 'natter_end_to_end_latency_seconds',
};

// ---------------------------------------------------------------- parsing

// Prometheus text format 0.0.4 → Map name → [{labels, value}].
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[3].replace('Inf', 'Infinity')) });
  }
  return out;
}

// The sum of every sample of a family (0 when there is none).
function total(scrape, name) {
  return (scrape.get(name) ?? []).reduce((s, x) => s + x.value, 0);
}

// A histogram's cumulative buckets, ascending by bound: [[le, count], …].
function buckets(scrape, name) {
  return (scrape.get(`${name}_bucket`) ?? [])
    .map((s) => [Number(s.labels.le.replace('Inf', 'Infinity')), s.value])
    .sort((a, b) => a[0] - b[0]);
}

// ---------------------------------------------------------------- maths

// Per-second increase of a counter between two scrapes; null across a
// restart (the counter went down) or with no time between them.
function rate(older, newer, name) {
  const dt = newer.t - older.t, dv = total(newer.m, name) - total(older.m, name);
  return dt > 0 && dv >= 0 ? dv / dt : null;
}

// histogram_quantile over the observations made between two scrapes:
// linear interpolation inside the bucket holding the rank; the highest
// finite bound when the rank falls in +Inf; null when nothing was observed.
export function quantile(q, older, newer) {
  const was = new Map(older);
  const inc = newer.map(([le, c]) => [le, c - (was.get(le) ?? 0)]);
  const n = inc.length ? inc[inc.length - 1][1] : 0;
  if (!(n > 0)) return null;
  const rank = q * n;
  let lower = 0, below = 0;
  for (const [le, c] of inc) {
    if (c >= rank) {
      if (le === Infinity) return lower;
      return c === below ? le : lower + (le - lower) * (rank - below) / (c - below);
    }
    lower = le;
    below = c;
  }
  return lower;
}

// ---------------------------------------------------------------- formatting

function fmtNumber(v) {
  if (v === null || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  if (a >= 10 || Number.isInteger(v)) return v.toFixed(0);
  return v.toFixed(a >= 1 ? 1 : 2);
}

function fmtSeconds(v) {
  if (v === null || !Number.isFinite(v)) return '–';
  if (v >= 1) return `${v.toFixed(v >= 10 ? 0 : 2)} s`;
  if (v >= 1e-3) return `${(v * 1e3).toFixed(v >= 1e-2 ? 0 : 1)} ms`;
  return `${(v * 1e6).toFixed(0)} µs`;
}

function fmtBytes(v) {
  if (!Number.isFinite(v)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i > 0 && v < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtDuration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 120) return `${Math.floor(s)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

// ---------------------------------------------------------------- charts

const COLORS = ['#1f5fbf', '#d9480f', '#2b8a3e', '#862e9c'];

// A step of 1, 2 or 5 times a power of ten that cuts [0, max] into at most 5.
function niceStep(max) {
  const p = 10 ** Math.floor(Math.log10(max / 5));
  return [1, 2, 5, 10].map((m) => m * p).find((step) => max / step <= 5);
}

// A line chart on a canvas: time on x (up to the last SPAN_S seconds), one
// or two y axes (linear from 0, or log10), a legend with each series' newest
// value.
class Chart {
  constructor(figure, series, axes) {
    this.figure = figure;
    this.canvas = figure.querySelector('canvas');
    this.series = series.map((s, i) => ({ axis: 'left', width: 2, dash: [], ...s, color: COLORS[i], points: [] }));
    this.axes = axes; // {left: {format, log?}, right?: {format}}
    const legend = figure.querySelector('.legend');
    for (const s of this.series) {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.borderTop = `3px ${s.dash.length ? 'dashed' : 'solid'} ${s.color}`;
      const value = document.createElement('span');
      value.className = 'value';
      value.textContent = '–';
      li.append(swatch, `${s.label}${s.axis === 'right' ? ' (right)' : ''}`, value);
      legend.append(li);
      s.valueEl = value;
    }
  }

  push(t, values) {
    for (const s of this.series) {
      const v = values[s.key];
      s.points.push([t, v === undefined || v === null || !Number.isFinite(v) ? null : v]);
      while (s.points.length > 0 && s.points[0][0] < t - SPAN_S) s.points.shift();
      s.valueEl.textContent = this.axes[s.axis].format(s.points[s.points.length - 1][1]);
    }
    const drawn = this.series.reduce((n, s) => n + s.points.filter((p) => p[1] !== null).length, 0);
    this.figure.dataset.points = String(drawn);
  }

  // The scale of one axis over what is visible: its ticks, lowest to
  // highest (log: powers of ten; linear: from 0 in nice steps).
  ticks(axis) {
    const vs = this.series.filter((s) => s.axis === axis).flatMap((s) => s.points.map((p) => p[1]))
      .filter((v) => v !== null && (!this.axes[axis].log || v > 0));
    if (this.axes[axis].log) {
      const lo = vs.length ? Math.floor(Math.log10(Math.min(...vs))) : -4;
      const hi = vs.length ? Math.max(Math.ceil(Math.log10(Math.max(...vs))), lo + 1) : 0;
      return Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i));
    }
    const max = Math.max(0, ...vs);
    const step = max > 0 ? niceStep(max) : 0.25;
    const n = max > 0 ? Math.ceil(max / step) : 4;
    return Array.from({ length: n + 1 }, (_, i) => i * step);
  }

  // Seconds of history on x: what there is, from a minute up to SPAN_S.
  span(now) {
    const first = Math.min(...this.series.map((s) => (s.points.length ? s.points[0][0] : now)));
    return Math.min(SPAN_S, Math.max(MIN_SPAN_S, now - first));
  }

  draw(now) {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 64, r: this.axes.right ? 64 : 12, t: 8, b: 22 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const span = this.span(now);
    const x = (t) => pad.l + (t - (now - span)) / span * pw;
    const scales = {};
    for (const axis of Object.keys(this.axes)) {
      const ticks = this.ticks(axis), lo = ticks[0], hi = ticks[ticks.length - 1];
      const log = this.axes[axis].log;
      scales[axis] = { ticks, lo, y: (v) => pad.t + ph - (log
        ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
        : (v - lo) / (hi - lo)) * ph };
    }
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.fillStyle = '#5a6272';
    ctx.textBaseline = 'middle';
    // horizontal grid on the left axis' ticks, labels on either side
    for (const v of scales.left.ticks) {
      const y = scales.left.y(v);
      ctx.strokeStyle = '#e6e9ef';
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + pw, y);
      ctx.stroke();
      ctx.textAlign = 'right';
      ctx.fillText(this.axes.left.format(v), pad.l - 6, y);
    }
    if (this.axes.right) {
      ctx.textAlign = 'left';
      for (const v of scales.right.ticks) ctx.fillText(this.axes.right.format(v), pad.l + pw + 6, scales.right.y(v));
    }
    // time: seconds ago, every 15 s, 30 s or minute
    const every = span > 180 ? 60 : span > 90 ? 30 : 15;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let ago = 0; ago <= span; ago += every) {
      ctx.fillText(ago === 0 ? 'now' : ago % 60 ? `-${ago} s` : `-${ago / 60} min`, x(now - ago), pad.t + ph + 6);
    }
    // the series, with gaps where a value is missing
    for (const s of this.series) {
      const { y, lo } = scales[s.axis];
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width;
      ctx.setLineDash(s.dash);
      ctx.beginPath();
      let pen = false;
      for (const [t, v] of s.points) {
        if (v === null || (this.axes[s.axis].log && v <= 0)) {
          pen = false;
          continue;
        }
        const py = y(Math.max(v, lo));
        if (pen) ctx.lineTo(x(t), py);
        else ctx.moveTo(x(t), py);
        pen = true;
      }
      ctx.stroke();
    }
  }

  data() {
    return Object.fromEntries(this.series.map((s) => [s.key, s.points.map((p) => [...p])]));
  }

  latest() {
    return Object.fromEntries(this.series.map((s) => [s.key, s.points.length ? s.points[s.points.length - 1][1] : null]));
  }
}

// ---------------------------------------------------------------- the page

function panels() {
  const rateAxis = { format: (v) => (v === null ? '–' : `${fmtNumber(v)}/s`) };
  return {
    throughput: new Chart(document.getElementById('throughput'), [
      { key: 'in', label: 'in: posted' },
      { key: 'out', label: 'out: consumed', dash: [6, 4] },
      { key: 'stored', label: 'stored', width: 1 },
    ], { left: rateAxis }),
    lag: new Chart(document.getElementById('lag'), [
      { key: 'lag', label: 'consumer lag' },
      { key: 'inflight', label: 'batches in flight (now)', axis: 'right', width: 1 },
      { key: 'inflightAvg', label: 'batches in flight (average)', axis: 'right' },
    ], { left: { format: fmtNumber }, right: { format: fmtNumber } }),
    latency: new Chart(document.getElementById('latency'), [
      { key: 'store', label: 'store batch' },
      { key: 'broadcast', label: 'broadcast' },
      { key: 'loop', label: 'loop' },
      { key: 'e2e', label: 'end to end' },
    ], { left: { format: fmtSeconds, log: true } }),
  };
}

// The panels' values at the newest scrape, against the one WINDOW_S before.
function sample(older, newer) {
  const q = (name) => quantile(0.99, buckets(older.m, name), buckets(newer.m, name));
  return {
    throughput: {
      in: rate(older, newer, 'natter_messages_posted_total'),
      out: rate(older, newer, 'natter_messages_consumed_total'),
      stored: rate(older, newer, 'natter_messages_stored_total'),
    },
    lag: {
      lag: total(newer.m, 'natter_consumer_lag'),
      inflight: total(newer.m, 'natter_batches_in_flight'),
      inflightAvg: rate(older, newer, 'natter_store_batch_duration_seconds_sum'),
    },
    latency: Object.fromEntries(Object.entries(LATENCY).map(([k, name]) => [k, q(name)])),
  };
}

function showProcess(older, newer) {
  const set = (id, text) => {
    document.getElementById(id).textContent = text;
  };
  const cpu = rate(older, newer, 'process_cpu_seconds_total');
  set('cpu', cpu === null ? '–' : `${cpu.toFixed(2)} cores`);
  set('rss', fmtBytes(total(newer.m, 'process_resident_memory_bytes')));
  set('sockets', fmtNumber(total(newer.m, 'natter_websockets_open')));
  set('pushes', `${fmtNumber(rate(older, newer, 'natter_messages_delivered_total'))}/s`);
  set('slow', fmtNumber(total(newer.m, 'natter_websockets_slow_closed_total')));
  set('errors', fmtNumber(total(newer.m, 'natter_store_errors_total')));
  set('uptime', fmtDuration(Date.now() / 1000 - total(newer.m, 'process_start_time_seconds')));
}

function start() {
  const charts = panels();
  const scrapes = []; // {t: seconds, m: parsed}
  const status = document.getElementById('status');
  document.getElementById('window').textContent = String(WINDOW_S);
  let failures = 0;

  async function poll() {
    const t = performance.now() / 1000;
    try {
      const res = await fetch('/metrics', { cache: 'no-store', signal: AbortSignal.timeout(POLL_MS * 3) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      scrapes.push({ t, m: parseMetrics(await res.text()) });
      failures = 0;
      status.dataset.state = 'online';
      status.textContent = `live · ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      failures++;
      status.dataset.state = 'offline';
      status.textContent = `natter unreachable (${e.message}); retrying`;
      for (const c of Object.values(charts)) c.push(t, {});
    }
    while (scrapes.length > 0 && scrapes[0].t < t - KEEP_S) scrapes.shift();
    const newer = scrapes[scrapes.length - 1];
    if (failures === 0 && scrapes.length >= 2) {
      // the oldest scrape inside the window, so a rate spans about WINDOW_S
      const older = scrapes.find((s) => s.t >= newer.t - WINDOW_S - 0.5) ?? scrapes[0];
      const base = older === newer ? scrapes[scrapes.length - 2] : older;
      const values = sample(base, newer);
      for (const [name, c] of Object.entries(charts)) c.push(t, values[name]);
      showProcess(base, newer);
    }
    for (const c of Object.values(charts)) c.draw(t);
  }

  window.dashboard = {
    windowSeconds: WINDOW_S,
    scrapes: () => scrapes.length,
    series: (panel) => charts[panel].data(),
    latest: (panel) => charts[panel].latest(),
  };
  // one scrape at a time: the next is scheduled once this one is drawn
  const loop = () => poll().then(() => setTimeout(loop, POLL_MS));
  loop();
  window.addEventListener('resize', () => {
    for (const c of Object.values(charts)) c.draw(performance.now() / 1000);
  });
}

if (typeof document !== 'undefined') start();
