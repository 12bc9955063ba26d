// What every browser test needs: a real natter (the ASan build) per test
// file, headless Chromium (Debian's, never a downloaded one), a TCP proxy
// that can cut connections, screenshots, and a plain API client. Everything
// started here stops within bounded time; natter's stderr is checked for
// sanitizer reports when it stops.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after as afterAll, before as beforeAll } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(import.meta.dirname, '..', '..');
export const OUT = path.resolve(process.env.NATTER_BROWSER_OUT ?? path.join(REPO, 'build', 'browser'));
const NATTER_BIN = path.resolve(process.env.NATTER_BIN ?? path.join(REPO, 'build', 'asan', 'natter'));
const CHROMIUM = '/usr/bin/chromium';
// Without the background-networking flags Chromium's own connections get
// refused on a closed network, and it stalls on them.
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SANITIZER_MARKERS = ['AddressSanitizer', 'runtime error:', 'LeakSanitizer', 'ThreadSanitizer'];
const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 10000;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Resolves to `value` after ms, without keeping the process alive for it.
function after(ms, value) {
  return sleep(ms, value, { ref: false });
}

function exited(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return Promise.race([new Promise((r) => proc.once('exit', () => r(true))), after(ms, false)]);
}

// Starts natter on a free loopback port with a fresh data directory; resolves
// once /healthz answers. stop() rejects if natter did not exit cleanly on
// SIGTERM or printed a sanitizer report.
export async function startNatter(args = [], env = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'natter-browser-'));
  await mkdir(path.join(dir, 'data'));
  const port = await freePort();
  const logPath = path.join(dir, 'natter.stderr');
  const log = openSync(logPath, 'w');
  const proc = spawn(NATTER_BIN, ['--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'),
    '--rate-limit', '0', '--rate-limit-writes', '0', '--rate-limit-reads', '0', '--auth-rate-ip', '0', '--auth-rate-user', '0', ...args], {
    stdio: ['ignore', log, log],
    env: { ...process.env, ASAN_OPTIONS: 'abort_on_error=0:detect_leaks=1:max_free_fill_size=65536:free_fill_byte=170', UBSAN_OPTIONS: 'print_stacktrace=1', ...env },
  });
  closeSync(log);
  const tail = () => readFileSync(logPath, 'utf8').slice(-6000);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`natter exited with ${proc.exitCode} during start-up:\n${tail()}`);
    try {
      if ((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`natter not healthy within ${START_TIMEOUT_MS} ms:\n${tail()}`);
    }
    await sleep(50);
  }
  return {
    base,
    port,
    async stop() {
      const problems = [];
      if (proc.exitCode !== null) problems.push(`natter had already exited with ${proc.exitCode}`);
      proc.kill('SIGTERM');
      if (!(await exited(proc, STOP_TIMEOUT_MS))) {
        problems.push(`natter did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
        proc.kill('SIGKILL');
        await exited(proc, STOP_TIMEOUT_MS);
      } else if (proc.exitCode !== 0) {
        problems.push(`natter exited with ${proc.exitCode ?? proc.signalCode} after SIGTERM`);
      }
      const text = readFileSync(logPath, 'utf8');
      if (SANITIZER_MARKERS.some((m) => text.includes(m))) problems.push('natter printed a sanitizer report');
      if (problems.length > 0) throw new Error(`${problems.join('; ')} (log kept in ${dir}):\n${tail()}`);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// The black-box tests' clock shim (tests/blackbox/shim/clockshift.c), built
// here: startNatter(args, shift.env) runs a natter whose wall clock is
// shift.set(seconds) away from this machine's, read at every call.
export async function clockShift() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'natter-clock-'));
  const so = path.join(dir, 'clockshift.so'), file = path.join(dir, 'offset');
  const shim = new URL('../blackbox/shim/clockshift.c', import.meta.url).pathname;
  execFileSync(process.env.CC || 'cc', ['-shared', '-fPIC', '-O1', '-o', so, shim, '-ldl']);
  writeFileSync(file, '0');
  return {
    env: { LD_PRELOAD: so, NATTER_TEST_CLOCK_FILE: file,
      ASAN_OPTIONS: 'abort_on_error=0:detect_leaks=1:verify_asan_link_order=0' },
    set: (seconds) => writeFileSync(file, String(seconds)),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

// Headless Chromium; every browser.newContext() is a fresh profile of its
// own (cookies, storage), as two people on two machines.
export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, timeout: 30000 });
}

// For a test file: one natter and one Chromium, started before its tests
// and stopped after them; env.natter and env.browser are set once started.
export function useNatterAndBrowser(natterArgs = []) {
  const env = {};
  beforeAll(async () => {
    env.natter = await startNatter(natterArgs);
    env.browser = await launchBrowser();
  });
  afterAll(() => closeAll(env.browser, env.natter));
  return env;
}

// Closes what a test opened, each step bounded, and reports the first error.
async function closeAll(browser, natter) {
  const errors = [];
  if (browser) {
    const closed = await Promise.race([browser.close().then(() => true), after(10000, false)]).catch((e) => e);
    if (closed !== true) errors.push(closed || new Error('Chromium did not close within 10 s'));
  }
  if (natter) await natter.stop().catch((e) => errors.push(e));
  if (errors.length > 0) throw errors[0];
}

// A TCP proxy in front of natter that a test can cut: drop() resets every
// open connection (HTTP and WebSocket alike, as a network failure would),
// setDown(true) also refuses new ones until setDown(false), and
// setLatency(ms) delays what natter sends on connections opened after it.
export async function startProxy(targetPort) {
  const open = new Set();
  let down = false, latency = 0;
  const server = net.createServer((client) => {
    if (down) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const lag = latency;
    for (const [from, to, delay] of [[client, upstream, 0], [upstream, client, lag]]) {
      open.add(from);
      from.on('data', (chunk) => (delay ? setTimeout(() => to.write(chunk), delay) : to.write(chunk)));
      from.on('end', () => (delay ? setTimeout(() => to.end(), delay) : to.end()));
      from.on('error', () => to.destroy());
      from.on('close', () => {
        open.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const drop = () => {
    for (const s of open) s.resetAndDestroy();
  };
  return {
    port: server.address().port,
    drop,
    setDown(value) {
      down = value;
      if (down) drop();
    },
    setLatency(ms) {
      latency = ms;
    },
    close() {
      drop();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

export async function screenshot(page, name) {
  await mkdir(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

// The HTTP API, outside the browser: to set a scene or check what the
// client did. Resolves to the JSON answer (null for 204); throws on an error.
export async function api(base, method, p, token, body) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + p, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
