// Webhooks from a cluster of three relays sharing a real redis-server, every node configured
// with the same target: each event reaches the receiver once, whichever node the clients use,
// and a node SIGKILLed while it holds a channel's last member (a follower, then the leader)
// still yields its member_removed and channel_vacated, once.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { Relay, app, it, sleep, subscribe, uniq, waitUntil } from '../lib/index.js';
import { startRedis } from '../lib/redis.js';
import { Receiver, allValid, target } from '../lib/webhooks.js';

const TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss', 'sonde_session_started', 'sonde_session_stopped'];
const HEARTBEAT_MS = 300;
const NODE_TIMEOUT_MS = 1500;
/** Long enough for every follower to have two leader heartbeats after anything before it. */
const SETTLE_MS = 4 * HEARTBEAT_MS + 500;

let redis;
let receiver;
let APP;
const nodes = [];
const ids = ['n1', 'n2', 'n3'];

before(async () => {
  redis = await startRedis();
  const credentials = app(7201, { client_events: true });
  receiver = await Receiver.start({ apps: [credentials] });
  APP = { ...credentials, webhooks: [target(receiver, TYPES)] };
  for (const id of ids) {
    const extraToml = `[redis]\nurl = "redis://127.0.0.1:${redis.port}/"\nprefix = "jswh"\nheartbeat_ms = ${HEARTBEAT_MS}\nnode_timeout_ms = ${NODE_TIMEOUT_MS}\nnode_id = "${id}"\n`;
    nodes.push(await Relay.start({ apps: [APP], extraToml }));
  }
}, { timeout: 60000 });

after(async () => {
  for (const n of nodes) await n.stop();
  redis?.stop();
  await receiver?.stop();
});

/** The index of the node holding the leader lease. */
async function leader() {
  const held = await waitUntil(() => redis.get('jswh:leader'), { what: 'a leader' });
  return ids.indexOf(held.split(':')[1]);
}

const names = (channel) => receiver.events((e) => e.channel === channel).map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));
const count = (list, name) => list.filter((n) => n === name).length;

describe('webhooks from a cluster of three relays', () => {
  it('each event once, whichever node its clients are on', async () => {
    const room = uniq('presence-ops');
    const alice1 = nodes[0].pusher({ user: { id: 'alice' } });
    const alice2 = nodes[1].pusher({ user: { id: 'alice' } });
    const bob = nodes[2].pusher({ user: { id: 'bob' } });
    await subscribe(alice1, room);
    await subscribe(alice2, room);
    const b = await subscribe(bob, room);
    await receiver.waitForEvent((e) => e.channel === room && e.user_id === 'bob');
    b.trigger('client-wave', { from: 'bob' });
    await receiver.waitForEvent((e) => e.channel === room && e.name === 'client_event');
    alice1.disconnect();
    alice2.disconnect();
    await receiver.waitForEvent((e) => e.channel === room && e.name === 'member_removed');
    bob.disconnect();
    await receiver.waitForEvent((e) => e.channel === room && e.name === 'channel_vacated');

    const host = uniq('web');
    const follower = nodes[((await leader()) + 1) % 3];
    const started = await follower.request({ app: APP.id, method: 'POST', path: '/sessions', body: { host, duration_s: 60 } });
    assert.equal(started.status, 200, started.text);
    await receiver.waitForEvent((e) => e.name === 'sonde_session_started' && e.host === host);
    await follower.request({ app: APP.id, method: 'DELETE', path: `/sessions/${host}` });
    await receiver.waitForEvent((e) => e.name === 'sonde_session_stopped' && e.host === host);

    await sleep(SETTLE_MS);
    const seen = names(room);
    // The leader sends occupancy and presence in order; the client event comes from bob's node.
    assert.deepEqual(seen.filter((n) => !n.startsWith('client_event')), ['channel_occupied', 'member_added:alice', 'member_added:bob', 'member_removed:alice', 'member_removed:bob', 'channel_vacated']);
    assert.equal(count(seen, 'client_event:bob'), 1);
    assert.equal(receiver.events((e) => e.host === host).length, 2, 'one start and one stop');
    allValid(receiver);
  }, { timeout: 30000 });

  for (const who of ['a follower', 'the leader']) {
    it(`${who} SIGKILLed while holding a channel's last member: member_removed and channel_vacated once`, async () => {
      const lead = await leader();
      const alive = nodes.map((n, i) => i).filter((i) => nodes[i].child.exitCode === null && nodes[i].child.signalCode === null);
      const victim = who === 'the leader' ? lead : alive.find((i) => i !== lead);
      const room = uniq('presence-last');
      const ghost = nodes[victim].pusher({ user: { id: 'ghost' } });
      await subscribe(ghost, room);
      await receiver.waitForEvent((e) => e.channel === room && e.name === 'member_added');
      await sleep(SETTLE_MS);
      await nodes[victim].kill();
      const killed = Date.now();
      await receiver.waitForEvent((e) => e.channel === room && e.name === 'channel_vacated', { timeout: 10000 });
      const took = Date.now() - killed;
      await sleep(SETTLE_MS);
      assert.deepEqual(names(room), ['channel_occupied', 'member_added:ghost', 'member_removed:ghost', 'channel_vacated'], `within ${took} ms of the kill`);
      if (who === 'the leader') assert.notEqual(await leader(), victim, 'another node took the lease');
      allValid(receiver);
    }, { timeout: 40000 });
  }
});
