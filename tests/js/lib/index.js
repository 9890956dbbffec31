// The small language the suites are written in.

import { after, afterEach, before, test } from 'node:test';

import { Relay } from './relay.js';

export { Relay, app, freePort, ENCRYPTION_MASTER_KEY } from './relay.js';
export { RawSocket } from './raw-socket.js';
export { rejectedWith, signedRequest } from './http.js';
export { connected, corrupt, nextEvent, signin, subscribe, subscribeLater, subscribed } from './pusher-client.js';
export { EventLog, SETTLE, SOON, record, sleep, waitUntil, withTimeout } from './wait.js';

/** A test that fails instead of hanging: 15 s unless told otherwise. */
export function it(name, fn, { timeout = 15000 } = {}) {
  return test(name, { timeout }, fn);
}

/**
 * One relay for the test file: started before the first test, its clients closed after each
 * test, stopped after the last. Returns a stand-in that forwards to the running relay, so a
 * file reads `const relay = useRelay({ apps })` and then `relay.pusher()` in its tests.
 */
export function useRelay(options) {
  let running = null;
  before(async () => {
    running = await Relay.start(options);
  }, { timeout: 30000 });
  afterEach(() => running?.closeClients());
  after(async () => {
    await running?.stop();
  }, { timeout: 15000 });
  return new Proxy({}, {
    get(_target, prop) {
      if (!running) throw new Error('the relay is not running (did its start fail?)');
      const value = running[prop];
      return typeof value === 'function' ? value.bind(running) : value;
    },
  });
}

let counter = 0;
/** A channel (or user) name no other test in this file uses. */
export function uniq(base) {
  counter += 1;
  return `${base}-${counter}`;
}
