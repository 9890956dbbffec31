// A websocket speaking the Pusher protocol by hand, for the wire details pusher-js hides:
// exact frames, close codes, and frames pusher-js would refuse to send.

import WebSocket from 'ws';

import { SETTLE, SOON, sleep, withTimeout } from './wait.js';

/** A frame as received, with `data` decoded once more when the server sent it as a string. */
function decode(text) {
  const frame = JSON.parse(text);
  const decoded = { ...frame, raw: text };
  if (typeof frame.data === 'string') {
    try {
      decoded.data = JSON.parse(frame.data);
    } catch {
      decoded.data = frame.data;
    }
  }
  return decoded;
}

function matcher(what) {
  if (typeof what === 'function') return what;
  if (typeof what === 'string') return (f) => f.event === what;
  return (f) => Object.entries(what).every(([k, v]) => f[k] === v);
}

export class RawSocket {
  /** Opens the socket; resolves when the upgrade succeeded (or with the refusal, if any).
   * `ca`: the PEM CA a wss:// relay's certificate is checked against. */
  static open(url, { server = null, timeout = SOON, ca = undefined } = {}) {
    const sock = new RawSocket(url, server, ca);
    return withTimeout(sock.opened, timeout, `websocket ${url} to open`).then(() => sock);
  }

  constructor(url, server, ca = undefined) {
    this.url = url;
    this.server = server;
    this.frames = [];
    this.unread = [];
    this.waiters = [];
    this.socketId = null;
    this.ws = new WebSocket(url, ca ? { ca } : {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      const frame = isBinary ? { event: '(binary frame)', raw: data } : decode(data.toString());
      this.frames.push(frame);
      const i = this.waiters.findIndex((w) => w.match(frame));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(frame);
      } else {
        this.unread.push(frame);
      }
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(frame) {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /**
   * The first unread frame matching `what` (an event name, a `{event, channel}` pattern or a
   * predicate); it is consumed. Rejects when the socket closes first or after `timeout`.
   */
  next(what, { timeout = SOON } = {}) {
    const match = matcher(what);
    const i = this.unread.findIndex(match);
    if (i >= 0) return Promise.resolve(this.unread.splice(i, 1)[0]);
    let waiter;
    const pending = new Promise((resolve, reject) => {
      waiter = { match, resolve };
      this.waiters.push(waiter);
      this.closed.then(({ code, reason }) => reject(new Error(`socket closed (${code} ${reason}) while waiting for ${JSON.stringify(String(what))}`)));
    });
    const label = typeof what === 'function' ? 'a matching frame' : JSON.stringify(what);
    return withTimeout(pending, timeout, `${label} (frames so far: ${this.frames.map((f) => f.event).join(', ') || 'none'})`).finally(() => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
    });
  }

  /** Every frame received so far that matches `what` (read or not). */
  seen(what) {
    return this.frames.filter(matcher(what));
  }

  async established() {
    const frame = await this.next('pusher:connection_established');
    this.socketId = frame.data.socket_id;
    return frame;
  }

  /** Sends `pusher:subscribe`, signing private and presence channels with the app's secret. */
  subscribe(channel, { presence, auth, channelData } = {}) {
    const data = { channel };
    if (auth !== undefined) data.auth = auth;
    if (channelData !== undefined) data.channel_data = channelData;
    if (auth === undefined && /^(private-|presence-)/.test(channel)) {
      const signed = this.server.authorizeChannel(this.socketId, channel, presence);
      data.auth = signed.auth;
      if (signed.channel_data !== undefined) data.channel_data = signed.channel_data;
    }
    this.send({ event: 'pusher:subscribe', data });
  }

  /** Subscribes and waits for `pusher_internal:subscription_succeeded`; returns that frame. */
  async join(channel, options) {
    this.subscribe(channel, options);
    const frame = await this.next((f) => f.channel === channel && /subscription_(succeeded|error)$/.test(f.event) || f.event === 'pusher:error');
    if (frame.event !== 'pusher_internal:subscription_succeeded') {
      throw new Error(`subscribing to ${channel} failed: ${frame.raw}`);
    }
    return frame;
  }

  unsubscribe(channel) {
    this.send({ event: 'pusher:unsubscribe', data: { channel } });
  }

  /** Sends a client event the way pusher-js does (data as an object). */
  trigger(channel, event, data = {}) {
    this.send({ event, channel, data });
  }

  /** Sends `pusher:ping` and waits for the pong: proves the socket is alive and processed
   * everything sent before. */
  async roundTrip() {
    this.send({ event: 'pusher:ping', data: {} });
    return this.next('pusher:pong');
  }

  /** Resolves with `{code, reason}` when the server closes the socket. */
  closedWithin(timeout = SOON) {
    return withTimeout(this.closed, timeout, `${this.url} to be closed`);
  }

  /** Asserts, after the settle time, that nothing matching `what` arrived. */
  async quiet(what, ms = SETTLE) {
    await sleep(ms);
    return this.seen(what);
  }

  /** Closes cleanly (1000) and waits for the close to complete. */
  async leave() {
    this.ws.close(1000);
    await this.closedWithin();
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }
}
