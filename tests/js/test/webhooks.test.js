// Webhooks from one relay to a real HTTP receiver that checks every request with the official
// Node SDK (`pusher.webhook(...).isValid()`, `getEvents()`), driven by pusher-js clients, the
// server SDK and a real sonde-agent.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { Agent } from '../lib/agent.js';
import { Relay, app, it, subscribe, uniq, waitUntil } from '../lib/index.js';
import { Receiver, allValid, target } from '../lib/webhooks.js';

const PUSHER_EVENTS = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss'];
const SONDE_EVENTS = ['sonde_session_started', 'sonde_session_stopped', 'sonde_agent_online', 'sonde_agent_offline'];

let receiver;
let relay;
let APP;
let BATCHED;

/** Events a target received: its URL ends with `/{path}`. */
const on = (path) => (e) => e.request.path === `/pusher/webhooks/${path}`;
const names = (path, channel) => receiver.events((e) => on(path)(e) && e.channel === channel).map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));

before(async () => {
  const credentials = app(7001);
  const batchedCredentials = app(7002);
  receiver = await Receiver.start({ apps: [credentials, batchedCredentials] });
  APP = {
    ...credentials,
    client_events: true,
    webhooks: [
      { ...target(receiver, [...PUSHER_EVENTS, ...SONDE_EVENTS], { headers: { 'X-Env': 'test' } }), url: `${receiver.url}/main` },
      { ...target(receiver, ['channel_occupied', 'channel_vacated'], { channel_prefix: 'presence-' }), url: `${receiver.url}/presence` },
      { ...target(receiver, ['subscription_count']), url: `${receiver.url}/counts` },
    ],
  };
  BATCHED = { ...batchedCredentials, webhook_batch_ms: 300, webhooks: [{ url: `${receiver.url}/batched`, event_types: ['channel_occupied'] }] };
  relay = await Relay.start({ apps: [APP, BATCHED], extraToml: '[sessions]\ngrace_ms = 300\n' });
}, { timeout: 30000 });

after(async () => {
  await relay?.stop();
  await receiver?.stop();
});

describe('webhooks from one relay', () => {
  it('channel_occupied and channel_vacated: signed, with the app key and the target headers', async () => {
    const name = uniq('news');
    const client = relay.pusher({ app: APP.id });
    await subscribe(client, name);
    const occupied = await receiver.waitForEvent((e) => on('main')(e) && e.channel === name);
    const req = occupied.request;
    assert.equal(req.method, 'POST');
    assert.equal(req.headers['x-pusher-key'], APP.key);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers['x-env'], 'test');
    assert.ok(Math.abs(req.time.getTime() - Date.now()) < 10000, 'time_ms is now');
    client.unsubscribe(name);
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === name && e.name === 'channel_vacated');
    assert.deepEqual(names('main', name), ['channel_occupied', 'channel_vacated']);
    assert.deepEqual(names('presence', name), [], 'outside the presence target\'s channel_prefix');
    allValid(receiver);
  });

  it('presence with two tabs of one user: one member_added and one member_removed', async () => {
    const room = uniq('presence-room');
    const tab1 = relay.pusher({ app: APP.id, user: { id: 'alice', info: { name: 'Alice' } } });
    const tab2 = relay.pusher({ app: APP.id, user: { id: 'alice', info: { name: 'Alice' } } });
    const bob = relay.pusher({ app: APP.id, user: { id: 'bob' } });
    await subscribe(tab1, room);
    await subscribe(tab2, room);
    const bobRoom = await subscribe(bob, room);
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === room && e.user_id === 'bob');
    tab1.disconnect();
    await waitUntil(async () => (await relay.channelInfo(room, 'subscription_count', APP.id)).subscription_count === 2, { what: 'tab 1 gone' });
    tab2.disconnect();
    await bobRoom.log.waitFor('pusher:member_removed');
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === room && e.name === 'member_removed');
    bob.disconnect();
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === room && e.name === 'channel_vacated');
    // Each target delivers on its own: the presence-only target may be a moment behind.
    await receiver.waitForEvent((e) => on('presence')(e) && e.channel === room && e.name === 'channel_vacated');
    assert.deepEqual(names('main', room), ['channel_occupied', 'member_added:alice', 'member_added:bob', 'member_removed:alice', 'member_removed:bob', 'channel_vacated']);
    assert.deepEqual(names('presence', room), ['channel_occupied', 'channel_vacated']);
    allValid(receiver);
  });

  it('client_event: the event, its data, the sender\'s socket_id, and user_id on presence only', async () => {
    const room = uniq('presence-chat');
    const priv = uniq('private-chat');
    const sender = relay.pusher({ app: APP.id, user: { id: 'carol' } });
    const listener = relay.pusher({ app: APP.id, user: { id: 'dave' } });
    const [sRoom, sPriv] = [await subscribe(sender, room), await subscribe(sender, priv)];
    const lRoom = await subscribe(listener, room);
    await subscribe(listener, priv);
    sRoom.trigger('client-typing', { n: 1, text: 'héllo' });
    sPriv.trigger('client-ping', { n: 2 });
    await lRoom.log.waitFor('client-typing');
    const onRoom = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'client_event' && e.channel === room);
    const onPriv = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'client_event' && e.channel === priv);
    const socketId = sender.connection.socket_id;
    const strip = ({ request, ...e }) => e;
    assert.deepEqual(strip(onRoom), { name: 'client_event', channel: room, event: 'client-typing', data: JSON.stringify({ n: 1, text: 'héllo' }), socket_id: socketId, user_id: 'carol' });
    assert.deepEqual(strip(onPriv), { name: 'client_event', channel: priv, event: 'client-ping', data: JSON.stringify({ n: 2 }), socket_id: socketId });
    allValid(receiver);
  });

  it('cache_miss only when nothing is cached', async () => {
    const name = uniq('cache-prices');
    const first = relay.pusher({ app: APP.id });
    await subscribe(first, name);
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === name && e.name === 'cache_miss');
    await relay.server(APP.id).trigger(name, 'price', { eur: 1 });
    const second = relay.pusher({ app: APP.id });
    const ch = await subscribe(second, name);
    await ch.log.waitFor('price');
    first.disconnect();
    second.disconnect();
    // A channel's events keep their order: a cache_miss for the second subscription would come
    // before the vacated.
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === name && e.name === 'channel_vacated');
    assert.deepEqual(names('main', name), ['channel_occupied', 'cache_miss', 'channel_vacated']);
  });

  it('subscription_count goes only to the target that asked for it', async () => {
    const name = uniq('counted');
    const a = relay.pusher({ app: APP.id });
    const b = relay.pusher({ app: APP.id });
    await subscribe(a, name);
    await subscribe(b, name);
    a.unsubscribe(name);
    await waitUntil(async () => (await relay.channelInfo(name, 'subscription_count', APP.id)).subscription_count === 1, { what: 'a gone' });
    b.unsubscribe(name);
    await receiver.waitUntil(() => receiver.events((e) => on('counts')(e) && e.channel === name).length === 4, { what: 'four counts' });
    const counts = receiver.events((e) => on('counts')(e) && e.channel === name).map((e) => e.subscription_count);
    assert.deepEqual(counts, [1, 2, 1, 0]);
    await receiver.waitForEvent((e) => on('main')(e) && e.channel === name && e.name === 'channel_vacated');
    assert.deepEqual(names('main', name), ['channel_occupied', 'channel_vacated'], 'no counts for a target without subscription_count');
  });

  it('webhook_batch_ms: events close together share a request; without it, one event per request', async () => {
    const client = relay.pusher({ app: BATCHED.id });
    const channels = [1, 2, 3, 4, 5].map(() => uniq('batch'));
    await Promise.all(channels.map((c) => subscribe(client, c)));
    const mine = (e) => on('batched')(e) && channels.includes(e.channel);
    await receiver.waitUntil(() => receiver.events(mine).length === 5, { what: 'five occupied' });
    const requests = new Set(receiver.events(mine).map((e) => e.request));
    assert.ok(requests.size <= 2, `5 events in ${requests.size} requests`);
    for (const r of requests) assert.equal(r.headers['x-pusher-key'], BATCHED.key);
    const single = receiver.requests.filter((r) => r.path === '/pusher/webhooks/main');
    assert.ok(single.length > 0 && single.every((r) => r.events.length === 1), 'the unbatched app sends one event per request');
  });

  it('sonde_session_started and _stopped, by a viewer and by the API', async () => {
    const host = uniq('web');
    const channel = `private-sonde-host.${host}`;
    const viewer = relay.pusher({ app: APP.id });
    await subscribe(viewer, channel);
    const started = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_session_started' && e.host === host);
    assert.equal(started.started_by, 'viewer');
    assert.equal(started.channel, channel);
    viewer.unsubscribe(channel);
    const stopped = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_session_stopped' && e.host === host);
    assert.equal(stopped.session_id, started.session_id);
    assert.equal(stopped.started_by, 'viewer');
    assert.ok(stopped.duration_ms >= 300, `lasted ${stopped.duration_ms} ms (the grace period at least)`);

    const apiHost = uniq('db');
    const res = await relay.request({ app: APP.id, method: 'POST', path: '/sessions', body: { host: apiHost, duration_s: 60 } });
    assert.equal(res.status, 200, res.text);
    const byApi = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_session_started' && e.host === apiHost);
    assert.equal(byApi.started_by, 'api');
    assert.equal(byApi.session_id, res.body.id);
    const del = await relay.request({ app: APP.id, method: 'DELETE', path: `/sessions/${apiHost}` });
    assert.equal(del.status, 200, del.text);
    const end = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_session_stopped' && e.host === apiHost);
    assert.equal(end.started_by, 'api');
    allValid(receiver);
  });

  it('sonde_agent_online and _offline for a real agent, with its install id and version', async () => {
    const host = uniq('agenthost');
    const agent = Agent.start({ relay, app: APP, host });
    try {
      const online = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_agent_online' && e.host === host, { timeout: 10000 });
      assert.equal(online.channel, `private-sonde-host.${host}`);
      const listed = await waitUntil(async () => {
        const res = await relay.request({ app: APP.id, path: '/agents' });
        return res.body?.agents?.find((a) => a.host === host && a.snapshot);
      }, { timeout: 20000, what: `the agent's first snapshot (agent log: ${agent.logs})` });
      await agent.stop('SIGTERM');
      const offline = await receiver.waitForEvent((e) => on('main')(e) && e.name === 'sonde_agent_offline' && e.host === host);
      assert.equal(offline.install_id, listed.snapshot.install_id);
      assert.match(offline.agent_version, /^\d+\.\d+\.\d+/);
    } finally {
      await agent.stop('SIGKILL');
    }
    assert.equal(receiver.events((e) => on('main')(e) && e.host === host && e.name === 'sonde_agent_online').length, 1);
    allValid(receiver);
  }, { timeout: 40000 });

  it('a request with a forged signature fails the SDK check (the receiver can tell)', async () => {
    const good = receiver.requests.find((r) => r.valid);
    const forged = receiver.sdk.webhook({ headers: { ...good.headers, 'x-pusher-signature': '0'.repeat(64) }, rawBody: good.rawBody });
    assert.equal(forged.isValid(), false);
    const tampered = receiver.sdk.webhook({ headers: good.headers, rawBody: good.rawBody.replace('"events"', '"events" ') });
    assert.equal(tampered.isValid(), false);
  });
});
