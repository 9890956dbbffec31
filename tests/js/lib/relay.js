// A real sonde-relay process for one test file: started on a free port, ready when /readyz
// answers 200, stopped with SIGTERM. Clients made through it are closed when it stops.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import PusherServer from 'pusher';

import { pusherClient } from './pusher-client.js';
import { RawSocket } from './raw-socket.js';
import { signedRequest } from './http.js';
import { TestCa } from './tls.js';
import { sleep } from './wait.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const relayBin = process.env.SONDE_RELAY_BIN || path.join(repoRoot, 'target/debug/sonde-relay');

/** 32 bytes, base64: the master key the server SDK derives per-channel secrets from. */
export const ENCRYPTION_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

/** An app only given with `--app`: client events and signin on, Pusher's default limits. */
export function app(id, overrides = {}) {
  return { id: String(id), key: `key${id}`, secret: `secret${id}`, ...overrides };
}

const CREDENTIALS = new Set(['id', 'key', 'secret']);

/** What an app given with `--app` gets; written out in full for apps in the config file. */
export const APP_DEFAULTS = {
  enabled: true,
  client_events: true,
  user_authentication: true,
  subscription_count: false,
  max_connections: 0,
  max_presence_members: 100,
  max_presence_member_info_bytes: 2048,
  max_payload_bytes: 10240,
  max_event_name_len: 200,
  max_channels_per_event: 100,
  max_batch_events: 10,
  client_events_per_second: 10,
  cache_ttl_s: 1800,
};

function hasSwitches(a) {
  return Object.keys(a).some((k) => !CREDENTIALS.has(k));
}

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  if (v && typeof v === 'object') return `{ ${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)} = ${tomlValue(x)}`).join(', ')} }`;
  throw new Error(`cannot write ${typeof v} to TOML`);
}

/**
 * `[[apps]]` tables for the apps that carry per-app switches. An app's `webhooks` (a list of
 * `{ url, event_types, channel_prefix?, headers? }`) become its `[[apps.webhooks]]` tables.
 */
export function appsToml(apps) {
  return apps
    .map(({ webhooks = [], ...a }) => {
      const lines = ['[[apps]]'];
      for (const [k, v] of Object.entries({ ...a, ...APP_DEFAULTS, ...a })) lines.push(`${k} = ${tomlValue(v)}`);
      for (const hook of webhooks) {
        lines.push('[[apps.webhooks]]');
        for (const [k, v] of Object.entries(hook)) lines.push(`${k} = ${tomlValue(v)}`);
      }
      return lines.join('\n');
    })
    .join('\n\n') + '\n';
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export class Relay {
  /**
   * Starts a relay. Apps with nothing but id/key/secret go on the command line (`--app`),
   * apps with switches into a TOML config file. With `tls`, it serves https and wss with a
   * certificate of a CA made for it (`relay.ca`: `caFile`, `ca` PEM).
   */
  static async start({ apps = [app(1001)], port, extraToml = '', tls = false } = {}) {
    const relay = new Relay(apps);
    relay.extraToml = extraToml;
    if (tls) {
      relay.ca = new TestCa();
      relay.cert = relay.ca.issue();
    }
    await relay.spawn(port ?? (await freePort()));
    return relay;
  }

  constructor(apps) {
    this.apps = apps;
    this.clients = new Set();
    this.logs = '';
    this.child = null;
    this.dir = null;
  }

  /** The app with this id (default: the first). */
  app(id) {
    if (id === undefined) return this.apps[0];
    const a = this.apps.find((x) => x.id === String(id));
    if (!a) throw new Error(`no app ${id} in this relay`);
    return a;
  }

  args() {
    const args = ['--bind', `127.0.0.1:${this.port}`];
    if (this.cert) args.push('--tls-cert', this.cert.certFile, '--tls-key', this.cert.keyFile);
    const configured = this.apps.filter(hasSwitches);
    for (const a of this.apps.filter((x) => !hasSwitches(x))) args.push('--app', `${a.id}:${a.key}:${a.secret}`);
    if (configured.length > 0 || this.extraToml) {
      this.dir ??= mkdtempSync(path.join(os.tmpdir(), 'sonde-js-'));
      const file = path.join(this.dir, 'relay.toml');
      writeFileSync(file, (this.extraToml ? `${this.extraToml}\n` : '') + appsToml(configured));
      args.push('--config', file);
    }
    return args;
  }

  async spawn(port) {
    if (!existsSync(relayBin)) {
      throw new Error(`sonde-relay not found at ${relayBin}: run \`cargo build -p sonde-relay\` or set SONDE_RELAY_BIN`);
    }
    this.port = port;
    const child = spawn(relayBin, this.args(), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    });
    this.child = child;
    const keep = (chunk) => {
      this.logs = (this.logs + chunk.toString()).slice(-20000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    killOnExit.add(child);
    this.exited.then(() => killOnExit.delete(child));
    await this.waitReady();
  }

  get httpBase() {
    return `${this.ca ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get wsBase() {
    return `${this.ca ? 'wss' : 'ws'}://127.0.0.1:${this.port}`;
  }

  /** An https.Agent trusting this relay's CA (and nothing else); undefined without TLS. */
  get agent() {
    this.httpsAgent ??= this.ca ? new https.Agent({ ca: this.ca.ca, keepAlive: false }) : undefined;
    return this.httpsAgent;
  }

  /** GET `pathname`: `{ status, text }`. Over https the relay's CA is trusted explicitly,
   * which fetch cannot do. */
  get(pathname, timeoutMs = 1000) {
    if (!this.ca) {
      return fetch(`${this.httpBase}${pathname}`, { signal: AbortSignal.timeout(timeoutMs) }).then(async (r) => ({ status: r.status, text: await r.text() }));
    }
    return new Promise((resolve, reject) => {
      const req = https.get(`${this.httpBase}${pathname}`, { agent: this.agent, timeout: timeoutMs }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, text }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  }

  async waitReady(timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    let exited = null;
    this.exited.then((e) => (exited = e));
    while (Date.now() < deadline) {
      if (exited) throw new Error(`sonde-relay exited (${JSON.stringify(exited)}) before it was ready:\n${this.logs}`);
      try {
        if ((await this.get('/readyz')).status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`sonde-relay not ready within ${timeoutMs} ms:\n${this.logs}`);
  }

  /** Closes every client made through this relay so far. */
  closeClients() {
    for (const c of this.clients) c.close();
    this.clients.clear();
  }

  /** Closes every client made through this relay, then SIGTERMs it and waits for the exit. */
  async stop() {
    this.closeClients();
    await this.terminate();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.ca?.remove();
  }

  /** SIGKILL: the process vanishes without a goodbye (a crashed node). */
  async kill() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM (clients stay open, to observe the shutdown) and wait; SIGKILL after 10 s. */
  async terminate() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /** Starts the same relay again on the same port (after `terminate`). */
  async restart() {
    await this.terminate();
    await this.spawn(this.port);
  }

  track(client) {
    this.clients.add(client);
    return client;
  }

  /** The official Node server SDK, pointed at this relay. */
  server(appId, overrides = {}) {
    const a = this.app(appId);
    return new PusherServer({
      appId: a.id,
      key: a.key,
      secret: a.secret,
      host: '127.0.0.1',
      port: String(this.port),
      useTLS: Boolean(this.ca),
      agent: this.agent,
      encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY,
      timeout: 5000,
      ...overrides,
    });
  }

  /** A pusher-js client (see pusher-client.js for the options). */
  pusher({ app: appId, ...options } = {}) {
    const a = this.app(appId);
    const client = pusherClient({ relay: this, app: a, server: this.server(a.id), ...options });
    this.track({ close: () => client.disconnect() });
    return client;
  }

  /** A raw websocket on /app/{key}; resolves once the socket is open (not yet established). */
  async raw({ key, app: appId, query = '?protocol=7&client=js&version=8.4.0&flash=false' } = {}) {
    const k = key ?? this.app(appId).key;
    const sock = await RawSocket.open(`${this.wsBase}/app/${k}${query}`, { server: key ? null : this.server(appId), ca: this.ca?.ca });
    this.track(sock);
    return sock;
  }

  /** A raw socket that has received `pusher:connection_established`. */
  async connect(options = {}) {
    const sock = await this.raw(options);
    await sock.established();
    return sock;
  }

  /** A signed HTTP API request made by hand, for the cases the SDK refuses to produce. */
  request(options) {
    const a = this.app(options.app);
    return signedRequest({ base: this.httpBase, appId: a.id, key: a.key, secret: a.secret, ...options });
  }

  /** GET /apps/{id}/channels/{name} through the SDK, decoded. */
  async channelInfo(name, info, appId) {
    const params = info ? { info } : {};
    const res = await this.server(appId).get({ path: `/channels/${name}`, params });
    return res.json();
  }
}

// A relay must never outlive its test file, even when the file crashes.
const killOnExit = new Set();
process.on('exit', () => {
  for (const child of killOnExit) child.kill('SIGKILL');
});
