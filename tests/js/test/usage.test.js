// Usage counts per app and per minute, read with the official server SDK's signed `get`:
// what one relay counted, the errors a wrong request gets, and in a cluster a minute one node
// closed as seen from another.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { Relay, app, it, rejectedWith, subscribe, uniq, waitUntil } from '../lib/index.js';
import { startRedis } from '../lib/redis.js';

const ALONE = app(7401);
const OTHER = app(7402);
const CLUSTERED = app(7403);

/** GET /apps/{id}/usage through the official SDK (which signs it), decoded. */
async function usage(relay, appId, params = {}) {
  const res = await relay.server(appId).get({ path: '/usage', params });
  assert.equal(res.status, 200);
  return res.json();
}

describe('usage of one relay', () => {
  let relay;
  before(async () => {
    relay = await Relay.start({ apps: [ALONE, OTHER] });
  }, { timeout: 30000 });
  after(async () => relay?.stop());

  it('counts publishes, deliveries and the connections of this app only', async () => {
    const name = uniq('metered');
    const clients = [relay.pusher({ app: ALONE.id }), relay.pusher({ app: ALONE.id }), relay.pusher({ app: ALONE.id })];
    const channels = await Promise.all(clients.map((c) => subscribe(c, name)));
    for (let i = 0; i < 5; i += 1) await relay.server(ALONE.id).trigger(name, 'tick', { i });
    await Promise.all(channels.map((ch) => waitUntil(() => ch.log.all('tick').length === 5, { what: 'five ticks' })));
    // Connections are read once a second: the busiest second shows all three.
    const seen = await waitUntil(async () => {
      const u = await usage(relay, ALONE.id);
      return u.totals.peak_connections >= 3 ? u : null;
    }, { timeout: 5000, what: 'a peak of three connections' });
    assert.equal(seen.totals.peak_connections, 3);
    assert.equal(seen.totals.messages_out, 5, `five events published: ${JSON.stringify(seen)}`);
    assert.equal(seen.totals.deliveries, 15, 'each to three subscribers');
    assert.ok(seen.totals.messages_in >= 3, `the subscribes were received (${seen.totals.messages_in})`);
    assert.deepEqual(seen.today.deliveries, 15);
    const open = seen.minutes.at(-1);
    assert.equal(open.open, true, 'the minute being counted is shown, marked open');
    assert.equal(open.t % 60, 0);
    assert.ok(Math.abs(open.t - Date.now() / 1000) < 120);
    assert.ok(seen.kept_since <= open.t);
    // Another app's usage knows nothing of it.
    const other = await usage(relay, OTHER.id);
    assert.equal(other.totals.deliveries, 0);
    assert.equal(other.totals.peak_connections, 0);
  });

  it('counts a session started through the API and its minutes', async () => {
    const started = await relay.server(ALONE.id).post({ path: '/sessions', body: { host: 'metered-host', duration_s: 60 } });
    assert.equal(started.status, 200);
    const u = await waitUntil(async () => {
      const r = await usage(relay, ALONE.id);
      return r.totals.sessions_started === 1 && r.totals.session_minutes >= 1 / 60 ? r : null;
    }, { timeout: 5000, what: 'the session and a second of it counted' });
    assert.ok(u.totals.session_minutes < 1, `${u.totals.session_minutes} session minutes within seconds`);
    assert.equal(u.today.sessions_started, 1);
    const stopped = await relay.request({ app: ALONE.id, method: 'DELETE', path: '/sessions/metered-host' });
    assert.equal(stopped.status, 200);
  });

  it('answers a span by from and to, and refuses a wrong one with a JSON error', async () => {
    const now = Math.floor(Date.now() / 1000);
    const past = await usage(relay, ALONE.id, { from: String(now - 7200), to: String(now - 3700) });
    assert.deepEqual(past.minutes, [], 'before the relay started nothing is known');
    assert.equal(past.from, Math.floor((now - 7200) / 60) * 60);
    for (const [params, what] of [
      [{ from: 'yesterday' }, 'Unix seconds'],
      [{ from: String(now), to: String(now - 60) }, 'after'],
      [{ from: String(now - 8 * 86400), to: String(now) }, 'seven days'],
    ]) {
      const body = await rejectedWith(relay.server(ALONE.id).get({ path: '/usage', params }), 400);
      assert.match(body.error, new RegExp(what));
    }
    const unsigned = await fetch(`${relay.httpBase}/apps/${ALONE.id}/usage`);
    assert.equal(unsigned.status, 401);
    assert.equal(typeof (await unsigned.json()).error, 'string');
    const wrongSecret = relay.server(ALONE.id, { secret: 'not-the-secret' });
    await rejectedWith(wrongSecret.get({ path: '/usage' }), 401);
  });
});

describe('usage in a cluster', () => {
  let redis;
  const nodes = [];
  before(async () => {
    redis = await startRedis();
    const extraToml = `[redis]\nurl = "redis://127.0.0.1:${redis.port}/"\nprefix = "usage"\nheartbeat_ms = 300\nnode_timeout_ms = 1500\n`;
    for (let i = 0; i < 2; i += 1) nodes.push(await Relay.start({ apps: [CLUSTERED], extraToml }));
  }, { timeout: 60000 });
  after(async () => {
    for (const n of nodes) await n.stop();
    redis?.stop();
  });

  it('a minute closed on one node is added to the others, once', async () => {
    const name = uniq('across');
    const here = await subscribe(nodes[0].pusher({ app: CLUSTERED.id }), name);
    const there = await subscribe(nodes[1].pusher({ app: CLUSTERED.id }), name);
    for (let i = 0; i < 4; i += 1) await nodes[0].server(CLUSTERED.id).trigger(name, 'tick', { i });
    await waitUntil(() => here.log.all('tick').length === 4 && there.log.all('tick').length === 4, { what: 'four ticks on both nodes' });
    // The minute closes at the next full minute; node 2 then holds node 1's publishes and both
    // nodes' deliveries, and so does node 1.
    const closed = (u) => u.minutes.filter((m) => !m.open);
    const sum = (ms, k) => ms.reduce((n, m) => n + m[k], 0);
    for (const node of [nodes[1], nodes[0]]) {
      const u = await waitUntil(async () => {
        const r = await usage(node, CLUSTERED.id);
        return sum(closed(r), 'messages_out') >= 4 && sum(closed(r), 'deliveries') >= 8 ? r : null;
      }, { timeout: 70000, every: 500, what: 'the closed minute with both nodes counts' });
      assert.equal(sum(closed(u), 'messages_out'), 4, 'publishes counted where they were made, once');
      assert.equal(sum(closed(u), 'deliveries'), 8, 'deliveries of both nodes, each once');
      assert.equal(Math.max(...closed(u).map((m) => m.peak_connections)), 2, 'one connection on each node');
    }
  }, { timeout: 90000 });
});
