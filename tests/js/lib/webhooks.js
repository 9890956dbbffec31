// A real HTTP receiver for webhooks, as a backend would run one: every request is checked with
// the official Node SDK (`pusher.webhook({ headers, rawBody })`: `isValid()`, `getEvents()`),
// and what it answers can be scripted: a status, a hang, or nothing at all (stopped).

import http from 'node:http';
import https from 'node:https';

import PusherServer from 'pusher';

import { SOON, waitUntil, withTimeout } from './wait.js';

export class Receiver {
  /**
   * Starts listening on a free port. `apps` are `{ id, key, secret }`: a request is checked
   * with the SDK configured for the app its `X-Pusher-Key` names (the first app when it names
   * none of them). `script` lists what to answer, one entry per request in turn (a status, or
   * 'hang' to never answer); after it runs out, `status` (200 unless told). With `tls`
   * (`{ cert, key }`, PEM) it serves https.
   */
  static async start({ apps, script = [], status = 200, tls = null } = {}) {
    const r = new Receiver(apps, script, status, tls);
    await r.listen(0);
    return r;
  }

  constructor(apps, script, status, tls = null) {
    this.tls = tls;
    this.sdks = new Map(apps.map((a) => [a.key, new PusherServer({ appId: a.id, key: a.key, secret: a.secret, host: '127.0.0.1', useTLS: false })]));
    this.sdk = this.sdks.get(apps[0].key);
    this.script = [...script];
    this.status = status;
    /** Every request: `{ at, headers, rawBody, valid, events, answered }`, in arrival order. */
    this.requests = [];
    this.waiters = [];
    this.hung = new Set();
    /** TLS handshakes that failed (a client that did not trust the certificate). */
    this.tlsErrors = 0;
    this.server = this.createServer();
  }

  createServer() {
    const handler = (req, res) => this.onRequest(req, res);
    const server = this.tls ? https.createServer({ cert: this.tls.cert, key: this.tls.key }, handler) : http.createServer(handler);
    server.keepAliveTimeout = 30000;
    server.on('tlsClientError', () => {
      this.tlsErrors += 1;
    });
    return server;
  }

  listen(port) {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve();
      });
    });
  }

  get url() {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}/pusher/webhooks`;
  }

  onRequest(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const sdk = this.sdks.get(req.headers['x-pusher-key']) ?? this.sdk;
      const hook = sdk.webhook({ headers: req.headers, rawBody });
      const valid = hook.isValid();
      const request = { at: Date.now(), method: req.method, path: req.url, headers: req.headers, rawBody, valid, events: valid ? hook.getEvents() : [], time: valid ? hook.getTime() : null };
      const answer = this.script.length > 0 ? this.script.shift() : this.status;
      request.answered = answer;
      this.requests.push(request);
      this.waiters = this.waiters.filter((w) => !w());
      if (answer === 'hang') {
        this.hung.add(res);
        return;
      }
      res.writeHead(answer, { 'content-type': 'application/json' });
      res.end('{}');
    });
  }

  /** Every event of every valid request, in order, with the request it came in. */
  events(where = () => true) {
    return this.requests.flatMap((r) => r.events.map((e) => ({ ...e, request: r }))).filter(where);
  }

  /** Events of a channel, as `name` or `name:user_id` strings, in order. */
  names(channel) {
    return this.events((e) => e.channel === channel).map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));
  }

  /** Resolves once `check()` is truthy (re-checked at each request), with its value. */
  waitUntil(check, { timeout = SOON, what = 'webhooks' } = {}) {
    const now = check();
    if (now) return Promise.resolve(now);
    const pending = new Promise((resolve) => {
      this.waiters.push(() => {
        const v = check();
        if (v) resolve(v);
        return Boolean(v);
      });
    });
    return withTimeout(pending, timeout, `${what} (received: ${JSON.stringify(this.events().map((e) => `${e.name} ${e.channel ?? ''}`))})`);
  }

  /** The first event matching `where`, seen already or still to come. */
  waitForEvent(where, options = {}) {
    return this.waitUntil(() => this.events(where)[0], options);
  }

  /** Stops answering: closes the listener and every open connection (a backend that is down). */
  async stop() {
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Listens again on the same port (a backend that came back). */
  async restart() {
    this.server = this.createServer();
    await this.listen(this.port);
  }
}

/** One webhook target for an app's config (`[[apps.webhooks]]`). */
export function target(receiver, eventTypes, extra = {}) {
  return { url: receiver.url, event_types: eventTypes, ...extra };
}

/** Every request was signed right and carried the app key. */
export function allValid(receiver) {
  const bad = receiver.requests.filter((r) => !r.valid);
  if (bad.length > 0) throw new Error(`${bad.length} webhook requests failed the SDK's check, e.g. ${JSON.stringify(bad[0].headers)} ${bad[0].rawBody}`);
  return true;
}

/** One counter or gauge of the relay's /metrics, summed over the series that match `labels`. */
export async function metric(relay, name, labels = {}) {
  const text = await (await fetch(`${relay.httpBase}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

/** The metric once it has reached `atLeast`, read again until then: the relay counts a
 * request's outcome after the receiver has answered it, so a test that has just seen the
 * receiver get a request may read the counter a moment before it moves. */
export async function metricReaching(relay, name, labels, atLeast) {
  let last = 0;
  await waitUntil(async () => (last = await metric(relay, name, labels)) >= atLeast, { what: `${name} ${JSON.stringify(labels)} >= ${atLeast}` });
  return last;
}

export { withTimeout, SOON };
