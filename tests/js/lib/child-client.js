// The parent's side of lib/tls-client.js: starts a pusher-js or Laravel Echo client in a node
// process of its own (trusting the relay's test CA through NODE_EXTRA_CA_CERTS, or not), and
// waits for what it reports.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SOON, withTimeout } from './wait.js';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tls-client.js');

export class ChildClient {
  /**
   * `kind`: 'pusher' or 'echo'; `channels` to subscribe to, `events` to listen for on each.
   * `trust`: whether the process is given the relay's CA (false: it has the system's roots
   * only, which do not know the test CA). `options`: more pusher-js options.
   */
  static start(relay, { kind = 'pusher', app: appId, channels = [], events = [], trust = true, options = {} } = {}) {
    const a = relay.app(appId);
    const spec = { kind, appId: a.id, key: a.key, port: relay.port, channels, events, options };
    const env = { ...process.env, SONDE_TEST_APP_SECRET: a.secret };
    delete env.NODE_EXTRA_CA_CERTS;
    if (trust) env.NODE_EXTRA_CA_CERTS = relay.ca.caFile;
    const child = new ChildClient(spawn(process.execPath, [script, JSON.stringify(spec)], { env, stdio: ['pipe', 'pipe', 'pipe'] }));
    relay.track(child);
    return child;
  }

  constructor(child) {
    this.child = child;
    /** Everything reported so far, in order. */
    this.reports = [];
    this.stderr = '';
    this.waiters = [];
    let partial = '';
    child.stdout.on('data', (chunk) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop();
      for (const line of lines.filter(Boolean)) this.onReport(JSON.parse(line));
    });
    child.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  onReport(r) {
    this.reports.push(r);
    this.waiters = this.waiters.filter((w) => !w());
  }

  /** The first report matching `where`, made already or still to come. */
  waitFor(where, what = JSON.stringify(where.toString()), timeout = SOON) {
    const found = () => this.reports.find(where);
    if (found()) return Promise.resolve(found());
    const pending = new Promise((resolve) => {
      this.waiters.push(() => {
        const r = found();
        if (r) resolve(r);
        return Boolean(r);
      });
    });
    return withTimeout(pending, timeout, `${what} (reports: ${JSON.stringify(this.reports)}; stderr: ${this.stderr})`);
  }

  subscribed(channel) {
    return this.waitFor((r) => r.subscribed === channel, `subscription to ${channel}`);
  }

  event(channel, name) {
    return this.waitFor((r) => r.channel === channel && r.event === name, `${name} on ${channel}`);
  }

  /** Disconnects and ends the process. */
  close() {
    this.child.stdin.end();
    setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
  }
}
