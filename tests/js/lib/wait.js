// Bounded waiting: every wait in the suite has a deadline and says what it waited for.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Default time to wait for something that must happen. */
export const SOON = 5000;

/** Time given to something that must NOT happen, after a positive control proved the path. */
export const SETTLE = 300;

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns a truthy value (which is returned). */
export async function waitUntil(check, { timeout = SOON, every = 50, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(every);
  }
}

/**
 * Everything an emitter said, in order, with waits on it. Works for pusher-js channels, the
 * user facade, the watchlist and the connection (anything with bind_global or bind).
 */
export class EventLog {
  constructor(label) {
    this.label = label;
    this.entries = [];
    this.waiters = [];
  }

  push(event, data, extra = {}) {
    const entry = { event, data, ...extra };
    this.entries.push(entry);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(entry)) return true;
      w.resolve(entry);
      return false;
    });
  }

  /** Names of what was seen so far. */
  events() {
    return this.entries.map((e) => e.event);
  }

  all(event) {
    return this.entries.filter((e) => e.event === event);
  }

  has(event) {
    return this.entries.some((e) => e.event === event);
  }

  /** A cursor for `waitFor(..., { since })`: only what comes after this point. */
  mark() {
    return this.entries.length;
  }

  /**
   * The first entry named `event` that satisfies `where`, seen already or still to come
   * (with `since`, only entries after that mark).
   */
  waitFor(event, { where = () => true, timeout = SOON, since = 0 } = {}) {
    const match = (e) => e.event === event && where(e.data, e);
    const seen = this.entries.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    const pending = new Promise((resolve) => this.waiters.push({ match, resolve }));
    return withTimeout(pending, timeout, `'${event}' on ${this.label} (saw: ${this.events().join(', ') || 'nothing'})`);
  }
}

/** Records every event a pusher-js Dispatcher (channel, user, watchlist) emits. */
export function record(emitter, label = emitter.name ?? 'emitter') {
  const log = new EventLog(label);
  emitter.bind_global((event, data) => log.push(event, data));
  return log;
}

/** The next `event` emitted by a pusher-js channel (or any Dispatcher), with its metadata. */
export function nextEvent(emitter, event, { timeout = SOON, where = () => true } = {}) {
  let handler;
  const pending = new Promise((resolve) => {
    handler = (data, metadata) => {
      if (where(data, metadata)) resolve({ data, metadata });
    };
    emitter.bind(event, handler);
  });
  return withTimeout(pending, timeout, `'${event}' on ${emitter.name ?? 'emitter'}`).finally(() => emitter.unbind(event, handler));
}
