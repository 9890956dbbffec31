// Three relay nodes sharing a real redis-server, with pusher-js clients spread over them and
// the official server SDK talking to any node.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { Relay, app, it, subscribe, waitUntil } from '../lib/index.js';
import { startRedis } from '../lib/redis.js';

const APP = app(5001, { client_events: true, subscription_count: true });

describe('a cluster of three relays', () => {
  let redis;
  const nodes = [];
  before(async () => {
    redis = await startRedis();
    const extraToml = `[redis]\nurl = "redis://127.0.0.1:${redis.port}/"\nprefix = "js"\nheartbeat_ms = 300\nnode_timeout_ms = 1500\n`;
    for (let i = 0; i < 3; i += 1) nodes.push(await Relay.start({ apps: [APP], extraToml }));
  }, { timeout: 60000 });
  after(async () => {
    for (const n of nodes) await n.stop();
    redis?.stop();
  });

  const user = (id) => ({ id, info: { name: id } });

  it('presence, publishes and client events look the same from every node', async () => {
    const alice1 = nodes[0].pusher({ user: user('alice') });
    const alice2 = nodes[1].pusher({ user: user('alice') });
    const bob = nodes[2].pusher({ user: user('bob') });
    const a1 = await subscribe(alice1, 'presence-ops');
    await waitUntil(async () => (await nodes[1].channelInfo('presence-ops', 'user_count')).user_count === 1, { what: 'alice known on node 2' });
    const a2 = await subscribe(alice2, 'presence-ops');
    assert.equal(a2.members.count, 1, 'a second tab on another node is the same member');
    await waitUntil(async () => (await nodes[2].channelInfo('presence-ops', 'user_count')).user_count === 1, { what: 'alice known on node 3' });
    const b = await subscribe(bob, 'presence-ops');
    assert.equal(b.members.count, 2);
    await a1.log.waitFor('pusher:member_added', { where: (m) => m.id === 'bob' });
    await a2.log.waitFor('pusher:member_added', { where: (m) => m.id === 'bob' });

    await nodes[1].server(APP.id).trigger('presence-ops', 'announce', { n: 1 });
    for (const ch of [a1, a2, b]) await ch.log.waitFor('announce');
    b.trigger('client-wave', { from: 'bob' });
    const { data } = await a1.log.waitFor('client-wave');
    assert.deepEqual(data, { from: 'bob' });
    await a2.log.waitFor('client-wave');
    await nodes[0].server(APP.id).trigger('presence-ops', 'marker', {});
    await b.log.waitFor('marker');
    assert.equal(b.log.all('client-wave').length, 0, 'never echoed to the sender');
    assert.equal(a1.log.all('pusher:member_added').length, 1, 'member_added once per user cluster-wide');

    const info = await nodes[2].channelInfo('presence-ops', 'user_count,subscription_count');
    assert.equal(info.user_count, 2);
    const users = await (await nodes[0].server(APP.id).get({ path: '/channels/presence-ops/users' })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);

    // alice's first tab leaves: her second keeps her a member.
    alice1.disconnect();
    await nodes[2].server(APP.id).trigger('presence-ops', 'marker2', {});
    await b.log.waitFor('marker2');
    assert.equal(b.log.all('pusher:member_removed').length, 0);
    alice2.disconnect();
    const removed = await b.log.waitFor('pusher:member_removed');
    assert.equal(removed.data.id, 'alice');
  }, { timeout: 30000 });

  it('a killed node: its members disappear everywhere within the node timeout', async () => {
    const watcher = nodes[0].pusher({ user: user('watcher') });
    const ghost = nodes[2].pusher({ user: user('ghost') });
    const w = await subscribe(watcher, 'presence-room');
    await subscribe(ghost, 'presence-room');
    await w.log.waitFor('pusher:member_added', { where: (m) => m.id === 'ghost' });
    await nodes[2].kill();
    const started = Date.now();
    const removed = await w.log.waitFor('pusher:member_removed', { timeout: 5000 });
    assert.equal(removed.data.id, 'ghost');
    assert.ok(Date.now() - started < 3500, `dropped after ${Date.now() - started} ms`);
    await waitUntil(async () => (await nodes[1].channelInfo('presence-room', 'user_count')).user_count === 1, { what: 'node 2 agrees' });
  }, { timeout: 30000 });
});
