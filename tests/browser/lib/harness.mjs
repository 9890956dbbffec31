// Real processes for the browser tests: a sonde-relay on a free port, sonde-agents that
// stream real /proc metrics to it, and headless Chromium opening the dashboard the relay
// serves at `/`. Everything a test starts is stopped by `cleanup()`, and by an exit hook if
// a test dies first. Every browser watches for Content-Security-Policy violations and fails
// the test that closes it if the page hit one.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { TestCa, fetchWithCa, homeTrusting } from './tls.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const RELAY_BIN = process.env.SONDE_RELAY_BIN || path.join(ROOT, 'target/debug/sonde-relay');
export const AGENT_BIN = process.env.SONDE_AGENT_BIN || path.join(ROOT, 'target/debug/sonde-agent');
export const CHROMIUM = process.env.SONDE_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = path.join(ROOT, 'artifacts/browser');

export const APP = { id: '1', key: 'key', secret: 'secret' };

/** Short session timing, so a stop is visible within a test. */
const CONFIG = `[sessions]
grace_ms = 1000
lease_ms = 6000
renew_ms = 2000
interval_ms = 1000

[[apps]]
id = "${APP.id}"
key = "${APP.key}"
secret = "${APP.secret}"
`;

const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeout` ms. */
export async function until(what, fn, { timeout = 15_000, every = 200 } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(every);
  }
}

/** Builds the binaries once if they are missing (a fresh clone). */
export function ensureBinaries() {
  if (existsSync(RELAY_BIN) && existsSync(AGENT_BIN)) return;
  const r = spawnSync('cargo', ['build', '-p', 'sonde-relay', '-p', 'sonde-agent'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build -p sonde-relay -p sonde-agent failed');
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tmpDir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), `sonde-browser-${prefix}-`));
}

function start(bin, args, name, env = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...env } });
  live.add(child);
  const log = [];
  const keep = (b) => {
    log.push(b.toString());
    if (log.length > 200) log.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    live.delete(child);
    resolve({ code, signal });
  }));
  child.logText = () => `${name}:\n${log.join('')}`;
  return child;
}

async function stop(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await child.exited;
  clearTimeout(timer);
}

export class TestRelay {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.configFile = path.join(dir, 'relay.toml');
    this.child = null;
  }

  /** With `tls`, the relay serves https and wss with a certificate of a CA made for it
   * (`relay.ca`); agents and the test's requests trust that CA, browsers only when told. */
  static async spawn({ tls = false } = {}) {
    ensureBinaries();
    const relay = new TestRelay(await freePort(), tmpDir('relay'));
    if (tls) {
      relay.ca = new TestCa();
      relay.cert = relay.ca.issue();
    }
    writeFileSync(relay.configFile, CONFIG);
    await relay.start();
    return relay;
  }

  get origin() {
    return `${this.ca ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** fetch on this relay; over TLS trusting its CA. */
  fetch(pathname, init = {}) {
    const url = `${this.origin}${pathname}`;
    return this.ca ? fetchWithCa(url, { ...init, ca: this.ca.ca }) : fetch(url, init);
  }

  async start() {
    const tls = this.cert ? ['--tls-cert', this.cert.certFile, '--tls-key', this.cert.keyFile] : [];
    this.child = start(RELAY_BIN, ['--bind', `127.0.0.1:${this.port}`, '--config', this.configFile, ...tls], 'sonde-relay');
    await until('the relay to be ready', async () => {
      if (this.child.exitCode !== null) throw new Error(`relay exited: ${this.child.logText()}`);
      const r = await this.fetch('/readyz').catch(() => null);
      return r?.status === 200;
    });
  }

  /** Kills the process outright, as a crash or an OOM kill would. */
  async kill() {
    await stop(this.child, 'SIGKILL');
  }

  async stop() {
    await stop(this.child);
    await this.static?.close();
    rmSync(this.dir, { recursive: true, force: true });
    this.ca?.remove();
  }

  token(role, { host, secret = APP.secret, ttl = '1h' } = {}) {
    const args = ['token', '--app', APP.id, '--role', role, '--ttl', ttl];
    if (host) args.push('--host', host);
    return execFileSync(RELAY_BIN, args, { env: { ...process.env, SONDE_APP_SECRET: secret } }).toString().trim();
  }

  /** A signed request on the HTTP API, per the Pusher HTTP API signing rules. */
  async api(pathname, method = 'GET') {
    const full = `/apps/${APP.id}${pathname}`;
    const params = { auth_key: APP.key, auth_timestamp: String(Math.floor(Date.now() / 1000)), auth_version: '1.0' };
    const query = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
    const signature = createHmac('sha256', APP.secret).update(`${method}\n${full}\n${query}`).digest('hex');
    const r = await this.fetch(`${full}?${query}&auth_signature=${signature}`, { method });
    if (r.status !== 200) throw new Error(`${method} ${full}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  async sessions() {
    return (await this.api('/sessions')).sessions;
  }

  /**
   * The dashboard's address with credentials in the fragment. The relay serves the page; only
   * while developing the page itself, SONDE_WEB_DIST=web/dist serves a fresh build from a
   * static server instead, pointed at this relay with the `ws=` fragment (which the page asks
   * to confirm: open it with `openDashboard`).
   */
  async dashboardUrl(viewerToken, key = APP.key) {
    const fragment = `key=${encodeURIComponent(key)}&token=${encodeURIComponent(viewerToken)}`;
    if (!process.env.SONDE_WEB_DIST) return `${this.origin}/#${fragment}`;
    this.static ??= await serveStatic(path.resolve(ROOT, process.env.SONDE_WEB_DIST));
    return `${this.static.origin}/#${fragment}&ws=127.0.0.1:${this.port}`;
  }
}

/**
 * Opens a dashboard URL. A page served statically (SONDE_WEB_DIST) reaches the relay through
 * `ws=`, which the page asks to confirm; this confirms it, as its user would.
 */
export async function openDashboard(page, url) {
  await page.goto(url);
  const ws = new URL(url).hash.match(/[#&]ws=([^&]+)/)?.[1];
  if (!ws) return;
  await page.getByRole('button', { name: `Connect to ${decodeURIComponent(ws)}` }).click({ timeout: 10_000 });
}

async function serveStatic(dir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  const server = http.createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.replace(/^\/$/, '/index.html');
    try {
      const body = readFileSync(path.join(dir, path.basename(name)));
      res.writeHead(200, { 'content-type': types[path.extname(name)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** Serves fixed HTML pages (`{ '/path': html }`) on a port of its own: another origin. */
export async function servePages(pages, host = '127.0.0.1') {
  const server = http.createServer((req, res) => {
    const body = pages[new URL(req.url, 'http://x').pathname];
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://${host}:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/**
 * A TCP listener that only counts the connections made to it: what a relay on another host
 * would see. Its sockets are held open unanswered and destroyed on close.
 */
export async function countingListener() {
  const sockets = new Set();
  const listener = { port: 0, connections: 0 };
  const server = net.createServer((s) => {
    listener.connections += 1;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  listener.port = server.address().port;
  listener.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  };
  return listener;
}

export class TestAgent {
  static async spawn(relay, host, { statsd = 'off' } = {}) {
    const agent = new TestAgent();
    agent.host = host;
    agent.dir = tmpDir(`agent-${host}`);
    const token = relay.token('agent', { host });
    const dial = relay.ca ? ['--relay', `wss://127.0.0.1:${relay.port}`, '--ca-file', relay.ca.caFile] : ['--relay', `ws://127.0.0.1:${relay.port}`];
    agent.child = start(
      AGENT_BIN,
      [...dial, '--key', APP.key, '--token', token, '--host', host, '--state-dir', agent.dir, '--statsd', statsd],
      `sonde-agent ${host}`,
    );
    await until(`agent ${host} to come online`, async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.child.logText()}`);
      const { agents } = await relay.api('/agents');
      return agents.some((a) => a.host === host && a.online);
    });
    return agent;
  }

  async stop() {
    await stop(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Headless Chromium with a fresh profile; `trust`: a CA file its user trusts (NSS). */
export async function launchBrowser({ trust } = {}) {
  const profile = tmpDir('profile');
  const home = trust ? homeTrusting(trust) : null;
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    env: home ? { ...process.env, HOME: home.home } : undefined,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
    colorScheme: 'dark',
  });
  const cspViolations = await watchCsp(context);
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return {
    context,
    page,
    errors,
    /** What the pages' policies refused; a test expecting a refusal empties it. */
    cspViolations,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
      home?.remove();
      if (cspViolations.length) throw new Error(`Content-Security-Policy violations in the browser: ${JSON.stringify(cspViolations, null, 1)}`);
    },
  };
}

/**
 * Records every `securitypolicyviolation` event in every page and frame of the context, and
 * every console message about the policy (those Chromium reports without an event, such as a
 * directive it ignores).
 */
async function watchCsp(context) {
  const seen = [];
  await context.exposeBinding('__sondeCspViolation', ({ frame }, v) => seen.push({ url: frame.url(), ...v }));
  await context.addInitScript(() => {
    document.addEventListener(
      'securitypolicyviolation',
      (e) => window.__sondeCspViolation({ directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber, sample: e.sample }),
      true,
    );
  });
  context.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) seen.push({ url: m.page()?.url(), console: m.type(), text: m.text() });
  });
  return seen;
}

/** Fails early, and clearly, if the relay was built without the dashboard. */
export async function assertDashboardServed(relay) {
  if (process.env.SONDE_WEB_DIST) return;
  const r = await relay.fetch('/app.js');
  const body = await r.text();
  if (r.status !== 200 || body.length < 1000) {
    throw new Error(`the relay at ${relay.origin} serves no dashboard (GET /app.js: ${r.status}, ${body.length} bytes): build web/ (npm run build) before the relay`);
  }
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** Collects things to stop after a test, in reverse order. */
export function resources() {
  const stack = [];
  return {
    add(x) {
      stack.push(x);
      return x;
    },
    /** Stops everything, then fails with the first error (a browser that saw a violation). */
    async cleanup() {
      let first = null;
      while (stack.length) {
        const x = stack.pop();
        await (x.close ?? x.stop).call(x).catch((e) => {
          first ??= e;
        });
      }
      if (first) throw first;
    },
  };
}

/** Reads a panel's state through the page's test hook. */
export function panelInfo(page, host) {
  return page.evaluate((h) => {
    const p = window.__sonde?.panels?.[h];
    return p ? { points: p.points(), state: p.state, charts: p.chartIds(), cpu: p.chartPoints('cpu') } : null;
  }, host);
}
