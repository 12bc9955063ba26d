// /dashboard under load: natter-load drives the original design's seed
// scenario (one room, ten listeners) at natter while headless Chromium
// shows the dashboard; every panel has to fill with live data, throughput
// and latency above zero, and the page has to say when natter goes away.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { REPO, screenshot, startProxy, useNatterAndBrowser } from './harness.mjs';

const NATTER_LOAD = path.resolve(process.env.NATTER_LOAD_BIN ?? path.join(REPO, 'build', 'asan', 'natter-load'));
const PANELS = ['throughput', 'lag', 'latency'];
const RATE = 300; // messages per second offered, each pushed to ten listeners

const env = useNatterAndBrowser();

// natter-load with its own deadline; resolves to {code, output}.
function load(base, stages) {
  const proc = spawn(NATTER_LOAD, ['--target', base, '--scenario', 'seed', '--stages', stages, '--quiet'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d) => { output += d; });
  proc.stderr.on('data', (d) => { output += d; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 120000);
  return new Promise((resolve) => proc.on('exit', (code, signal) => {
    clearTimeout(timer);
    resolve({ code: code ?? signal, output });
  }));
}

// The dashboard in a fresh page, failing on page errors and CSP violations.
async function openDashboard(base) {
  const page = await (await env.browser.newContext({ viewport: { width: 1500, height: 900 } })).newPage();
  page.setDefaultTimeout(30000);
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(String(e)));
  page.on('console', (m) => {
    // a browser asks every site for /favicon.ico; natter has none
    if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) page.problems.push(m.text());
  });
  await page.goto(`${base}/dashboard`);
  return page;
}

test('every panel fills with live data while natter is under load', async () => {
  const running = load(env.natter.base, `${RATE}:1s,${RATE}:30s,0:1s`);
  const page = await openDashboard(env.natter.base);
  // Ten points on each panel, every series a value above zero at once, and
  // the rates near what is offered: the load has been through every stage.
  await page.waitForFunction((rate) => {
    const d = window.dashboard;
    const figures = ['throughput', 'lag', 'latency'].map((id) => document.getElementById(id));
    if (!d || figures.some((f) => Number(f.dataset.points) < 10)) return false;
    const t = d.latest('throughput'), l = d.latest('latency');
    return t.in > rate * 0.7 && t.out > rate * 0.7 && t.stored > 0
      && l.store > 0 && l.broadcast > 0 && l.loop > 0 && l.e2e > 0;
  }, RATE, { timeout: 40000, polling: 250 });

  const latest = Object.fromEntries(await Promise.all(PANELS.map(async (p) =>
    [p, await page.evaluate((name) => window.dashboard.latest(name), p)])));
  // in and out: near the offered rate (over a 5 s window)
  for (const k of ['in', 'out']) {
    const v = latest.throughput[k];
    assert.ok(v > RATE * 0.5 && v < RATE * 2, `${k}: ${v}/s against ${RATE}/s offered`);
  }
  assert.ok(latest.lag.lag >= 0 && latest.lag.inflightAvg > 0, JSON.stringify(latest.lag));
  // the breakdown is ordered the way the pipeline is: a loop holds its store write
  const l = latest.latency;
  assert.ok(l.loop >= l.store * 0.5, JSON.stringify(l));
  assert.ok(l.e2e < 10, `end-to-end p99 ${l.e2e} s`);
  const shown = await page.locator('#throughput .legend .value').first().textContent();
  assert.match(shown, /^[0-9.]+k?\/s$/);
  // twenty seconds of the load drawn, for the screenshot
  await page.waitForFunction(() => window.dashboard.series('throughput').in.filter(([, v]) => v > 0).length >= 20,
    null, { timeout: 30000, polling: 500 });
  await screenshot(page, 'dashboard');
  assert.deepEqual(page.problems, [], 'errors in the page');

  const { code, output } = await running;
  assert.equal(code, 0, `natter-load failed:\n${output.slice(-3000)}`);
  await page.context().close();
});

test('the dashboard says when natter is unreachable, and resumes', async () => {
  const proxy = await startProxy(env.natter.port);
  try {
    const page = await openDashboard(`http://127.0.0.1:${proxy.port}`);
    await page.waitForSelector('#status[data-state="online"]');
    proxy.setDown(true);
    await page.waitForSelector('#status[data-state="offline"]');
    assert.match(await page.locator('#status').textContent(), /unreachable/);
    proxy.setDown(false);
    await page.waitForSelector('#status[data-state="online"]');
    const before = Number(await page.locator('#lag').getAttribute('data-points'));
    // drawing again: a new point comes (the page's own 30 s timeout fails a dashboard that stays still)
    await page.waitForFunction((n) => Number(document.getElementById('lag').dataset.points) > n, before,
      { polling: 250 });
    await page.context().close();
  } finally {
    await proxy.close();
  }
});
