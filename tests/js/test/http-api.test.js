// The Pusher HTTP API through the official Node SDK, and every way a request can be wrong.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe } from 'node:test';

import { app, it, rejectedWith, subscribe, uniq, useRelay, waitUntil } from '../lib/index.js';

const main = app(1001);
const counted = app(1002, { subscription_count: true });
const disabled = app(1003, { enabled: false });

const relay = useRelay({ apps: [main, counted, disabled] });

const json = async (res) => res.json();

/** A decoded JSON error body: `{"error": "<a message>"}`. */
function assertErrorBody(body) {
  assert.equal(typeof body?.error, 'string', `error body: ${JSON.stringify(body)}`);
  assert.ok(body.error.length > 0);
}

describe('publishing', () => {
  it('triggers to several channels and excludes the socket_id given', async () => {
    const one = uniq('multi-a');
    const two = uniq('multi-b');
    const sender = relay.pusher();
    const other = relay.pusher();
    const [s1, s2] = [await subscribe(sender, one), await subscribe(sender, two)];
    const [o1, o2] = [await subscribe(other, one), await subscribe(other, two)];
    const res = await relay.server().trigger([one, two], 'update', { v: 1 }, { socket_id: sender.connection.socket_id });
    assert.equal(res.status, 200);
    assert.deepEqual((await o1.log.waitFor('update')).data, { v: 1 });
    assert.deepEqual((await o2.log.waitFor('update')).data, { v: 1 });
    await relay.server().trigger([one, two], 'control', {});
    await Promise.all([s1.log.waitFor('control'), s2.log.waitFor('control')]);
    assert.equal(s1.log.has('update'), false, 'the excluded socket got the event on the first channel');
    assert.equal(s2.log.has('update'), false, 'the excluded socket got the event on the second channel');
  });

  it('answers a trigger with a JSON object', async () => {
    const res = await relay.server().trigger(uniq('nobody'), 'ev', {});
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body, 'object');
    assert.notEqual(body, null);
  });

  it('triggers a batch: every item reaches its channel, socket_id per item', async () => {
    const a = uniq('batch-a');
    const b = uniq('batch-b');
    const alice = relay.pusher();
    const bob = relay.pusher();
    const aa = await subscribe(alice, a);
    const ab = await subscribe(alice, b);
    const ba = await subscribe(bob, a);
    const res = await relay.server().triggerBatch([
      { channel: a, name: 'first', data: { n: 1 } },
      { channel: b, name: 'second', data: { n: 2 } },
      { channel: a, name: 'third', data: { n: 3 }, socket_id: alice.connection.socket_id },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual((await aa.log.waitFor('first')).data, { n: 1 });
    assert.deepEqual((await ab.log.waitFor('second')).data, { n: 2 });
    assert.deepEqual((await ba.log.waitFor('third')).data, { n: 3 });
    await relay.server().trigger(a, 'control', {});
    await Promise.all([aa.log.waitFor('control'), ba.log.waitFor('control')]);
    assert.equal(aa.log.has('third'), false, 'the excluded socket got the batch item');
    assert.deepEqual(ba.log.events().filter((e) => !e.startsWith('pusher')), ['first', 'third', 'control']);
  });

  it('returns the channels\' attributes when a trigger asks for info', async () => {
    const room = uniq('presence-info');
    await subscribe(relay.pusher({ user: { id: 'u1' } }), room);
    await subscribe(relay.pusher({ user: { id: 'u1' } }), room);
    await subscribe(relay.pusher({ user: { id: 'u2' } }), room);
    const res = await relay.server().trigger(room, 'ev', {}, { info: 'user_count' });
    assert.deepEqual(await res.json(), { channels: { [room]: { user_count: 2 } } });
  });

  it('returns subscription_count per channel when asked on an app that counts subscriptions', async () => {
    const name = uniq('counted');
    await subscribe(relay.pusher({ app: counted.id }), name);
    await subscribe(relay.pusher({ app: counted.id }), name);
    const res = await relay.server(counted.id).trigger(name, 'ev', {}, { info: 'subscription_count' });
    assert.deepEqual(await res.json(), { channels: { [name]: { subscription_count: 2 } } });
  });

  it('returns per-item info for a batch that asks for it', async () => {
    const name = uniq('counted-batch');
    await subscribe(relay.pusher({ app: counted.id }), name);
    const res = await relay.server(counted.id).triggerBatch([
      { channel: name, name: 'a', data: {}, info: 'subscription_count' },
      { channel: name, name: 'b', data: {} },
    ]);
    const body = await res.json();
    assert.equal(body.batch.length, 2);
    assert.deepEqual(body.batch[0], { subscription_count: 1 });
    assert.deepEqual(body.batch[1], {});
  });
});

describe('channel queries', () => {
  it('lists occupied channels, filtered by prefix, with user_count on presence', async () => {
    const tag = uniq('q');
    const big = `presence-${tag}-big`;
    const small = `presence-${tag}-small`;
    const plain = `${tag}-plain`;
    await subscribe(relay.pusher({ user: { id: 'a' } }), big);
    await subscribe(relay.pusher({ user: { id: 'a' } }), big);
    await subscribe(relay.pusher({ user: { id: 'b' } }), big);
    await subscribe(relay.pusher({ user: { id: 'c' } }), small);
    await subscribe(relay.pusher(), plain);
    const server = relay.server();

    const filtered = await json(await server.get({ path: '/channels', params: { filter_by_prefix: `presence-${tag}`, info: 'user_count' } }));
    assert.deepEqual(filtered, { channels: { [big]: { user_count: 2 }, [small]: { user_count: 1 } } });

    const all = await json(await server.get({ path: '/channels' }));
    for (const name of [big, small, plain]) assert.ok(name in all.channels, `${name} missing from ${JSON.stringify(all)}`);
    assert.deepEqual(all.channels[plain], {});

    const byPrefix = await json(await server.get({ path: '/channels', params: { filter_by_prefix: tag } }));
    assert.deepEqual(byPrefix, { channels: { [plain]: {} } });
  });

  it('refuses info=user_count without a presence- prefix filter (400)', async () => {
    const body = await rejectedWith(relay.server().get({ path: '/channels', params: { info: 'user_count' } }), 400);
    assertErrorBody(body);
  });

  it('does not list a channel once everyone left', async () => {
    const name = uniq('gone');
    const client = relay.pusher();
    await subscribe(client, name);
    client.disconnect();
    await waitUntil(async () => !((await json(await relay.server().get({ path: '/channels' }))).channels[name]), { what: `${name} to disappear` });
  });

  it('describes one channel with occupied, user_count and subscription_count', async () => {
    const room = `presence-${uniq('described')}`;
    await subscribe(relay.pusher({ app: counted.id, user: { id: 'x' } }), room);
    await subscribe(relay.pusher({ app: counted.id, user: { id: 'x' } }), room);
    await subscribe(relay.pusher({ app: counted.id, user: { id: 'y' } }), room);
    const info = await relay.channelInfo(room, 'subscription_count,user_count', counted.id);
    assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 3 });
  });

  it('describes a public channel with subscription_count', async () => {
    const name = uniq('described-public');
    await subscribe(relay.pusher({ app: counted.id }), name);
    await subscribe(relay.pusher({ app: counted.id }), name);
    const info = await relay.channelInfo(name, 'subscription_count', counted.id);
    assert.deepEqual(info, { occupied: true, subscription_count: 2 });
  });

  it('describes an empty channel as not occupied', async () => {
    const info = await relay.channelInfo(uniq('empty'));
    assert.equal(info.occupied, false);
    assert.equal('user_count' in info, false);
  });

  it('refuses user_count on a channel that is not a presence channel (400)', async () => {
    const body = await rejectedWith(relay.server().get({ path: `/channels/${uniq('public')}`, params: { info: 'user_count' } }), 400);
    assertErrorBody(body);
  });

  it('lists the distinct users of a presence channel', async () => {
    const room = uniq('presence-users');
    await subscribe(relay.pusher({ user: { id: '1' } }), room);
    await subscribe(relay.pusher({ user: { id: '1' } }), room);
    await subscribe(relay.pusher({ user: { id: '2' } }), room);
    const { users } = await json(await relay.server().get({ path: `/channels/${room}/users` }));
    assert.deepEqual(users.sort((a, b) => a.id.localeCompare(b.id)), [{ id: '1' }, { id: '2' }]);
  });

  it('refuses /users on a channel that is not a presence channel (400)', async () => {
    const body = await rejectedWith(relay.server().get({ path: `/channels/${uniq('private-x')}/users` }), 400);
    assertErrorBody(body);
  });

  it('keeps apps apart: one app\'s channels are invisible to another', async () => {
    const name = uniq('tenant');
    await subscribe(relay.pusher(), name);
    const theirs = await json(await relay.server(counted.id).get({ path: '/channels', params: { filter_by_prefix: name } }));
    assert.deepEqual(theirs, { channels: {} });
    const info = await relay.channelInfo(name, undefined, counted.id);
    assert.equal(info.occupied, false);
    const ours = await relay.channelInfo(name);
    assert.equal(ours.occupied, true);
  });
});

describe('authentication failures', () => {
  it('answers a wrong secret with 401 and a JSON error', async () => {
    const body = await rejectedWith(relay.server(main.id, { secret: 'not-the-secret' }).trigger(uniq('x'), 'ev', {}), 401);
    assertErrorBody(body);
  });

  it('answers a wrong key with 401', async () => {
    const body = await rejectedWith(relay.server(main.id, { key: 'not-the-key' }).get({ path: '/channels' }), 401);
    assertErrorBody(body);
  });

  it('accepts a hand-signed request (control for the tampered ones below)', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: [uniq('ok')], data: '{}' } });
    assert.equal(res.status, 200, res.text);
  });

  it('refuses a timestamp more than 600 s old with 401', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: ['x'], data: '{}' }, timestamp: Math.floor(Date.now() / 1000) - 700 });
    assert.equal(res.status, 401, res.text);
    assertErrorBody(res.body);
  });

  it('refuses a timestamp more than 600 s in the future with 401', async () => {
    const res = await relay.request({ path: '/channels', timestamp: Math.floor(Date.now() / 1000) + 700 });
    assert.equal(res.status, 401, res.text);
    assertErrorBody(res.body);
  });

  it('accepts a timestamp 500 s old', async () => {
    const res = await relay.request({ path: '/channels', timestamp: Math.floor(Date.now() / 1000) - 500 });
    assert.equal(res.status, 200, res.text);
  });

  it('refuses a body_md5 that does not match the body', async () => {
    const body = { name: 'ev', channels: ['x'], data: '{}' };
    const other = JSON.stringify({ ...body, data: '{"tampered":true}' });
    const bodyMd5 = crypto.createHash('md5').update(other).digest('hex');
    const res = await relay.request({ method: 'POST', path: '/events', body, bodyMd5 });
    assert.equal(res.status, 401, res.text);
    assertErrorBody(res.body);
  });

  it('refuses a POST whose body is not covered by a body_md5', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: ['x'], data: '{}' }, bodyMd5: null });
    assert.ok([400, 401].includes(res.status), `${res.status} ${res.text}`);
    assertErrorBody(res.body);
  });

  it('accepts a GET that carries the body_md5 of the empty body (as the Python SDK sends it)', async () => {
    const emptyMd5 = crypto.createHash('md5').update('').digest('hex');
    const res = await relay.request({ path: '/channels', bodyMd5: emptyMd5 });
    assert.equal(res.status, 200, res.text);
    assert.equal(typeof res.body.channels, 'object');
  });

  it('refuses a signature over different query parameters', async () => {
    const good = await relay.request({ path: '/channels', params: { filter_by_prefix: 'a' } });
    assert.equal(good.status, 200, good.text);
    const forged = await relay.request({ path: '/channels', params: { filter_by_prefix: 'a' }, signature: 'f'.repeat(64) });
    assert.equal(forged.status, 401, forged.text);
  });

  it('refuses a request with no signature at all with 401', async () => {
    const res = await fetch(`${relay.httpBase}/apps/${main.id}/channels`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 401);
    assertErrorBody(await res.json());
  });

  it('answers an unknown app id with 404 and a JSON error', async () => {
    const stranger = relay.server(main.id, { appId: '999999' });
    const body = await rejectedWith(stranger.trigger(uniq('x'), 'ev', {}), 404);
    assertErrorBody(body);
  });

  it('answers a disabled app with 403', async () => {
    const body = await rejectedWith(relay.server(disabled.id).trigger(uniq('x'), 'ev', {}), 403);
    assertErrorBody(body);
  });
});

describe('limits and bad requests', () => {
  it('refuses data over 10 KB with 413 and accepts it under', async () => {
    const name = uniq('big');
    const sock = await relay.connect();
    await sock.join(name);
    const body = await rejectedWith(relay.server().trigger(name, 'huge', 'x'.repeat(10 * 1024 + 1)), 413);
    assertErrorBody(body);
    const ok = await relay.server().trigger(name, 'fits', 'y'.repeat(10 * 1024 - 100));
    assert.equal(ok.status, 200);
    await sock.next({ event: 'fits', channel: name });
    assert.deepEqual(sock.seen('huge'), []);
  });

  it('refuses more than 100 channels in one trigger with 400 and accepts 100', async () => {
    const names = (n) => Array.from({ length: n }, (_, i) => `many-${i}`);
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: names(101), data: '{}' } });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
    const ok = await relay.server().trigger(names(100), 'ev', {});
    assert.equal(ok.status, 200);
  });

  it('refuses a batch of more than 10 events with 400', async () => {
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: `b-${i}`, name: 'ev', data: '{}' }));
    const res = await relay.request({ method: 'POST', path: '/batch_events', body: { batch } });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });

  for (const [what, channel] of [
    ['a space', 'bad name'],
    ['a character outside the set', 'bad*name'],
    ['201 characters', 'n'.repeat(201)],
    ['an empty name', ''],
  ]) {
    it(`refuses a channel name with ${what} with 400`, async () => {
      const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: [channel], data: '{}' } });
      assert.equal(res.status, 400, res.text);
      assertErrorBody(res.body);
    });
  }

  it('accepts an event name of exactly 200 characters', async () => {
    const name = uniq('longevent');
    const sock = await relay.connect();
    await sock.join(name);
    const event = 'e'.repeat(200);
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: event, channels: [name], data: '{}' } });
    assert.equal(res.status, 200, res.text);
    await sock.next({ event, channel: name });
  });

  it('refuses an invalid channel name in a channel query with 400', async () => {
    const res = await relay.request({ path: '/channels/bad*name' });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });

  it('answers terminate_connections for a user with no connections with 200', async () => {
    const res = await relay.server().terminateUserConnections(uniq('nobody'));
    assert.equal(res.status, 200);
  });

  it('refuses an event name over 200 characters with 400', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'e'.repeat(201), channels: ['ok'], data: '{}' } });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });

  it('refuses a trigger to an encrypted channel together with another channel with 400', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: ['private-encrypted-a', 'public-b'], data: '{}' } });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });

  it('refuses a body that is not JSON with 400', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: '{"name": "ev", "channels": [' });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });

  it('refuses a trigger without a name or without channels with 400', async () => {
    for (const body of [{ channels: ['a'], data: '{}' }, { name: 'ev', data: '{}' }]) {
      const res = await relay.request({ method: 'POST', path: '/events', body });
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${res.text}`);
    }
  });

  it('refuses a malformed socket_id with 400', async () => {
    const res = await relay.request({ method: 'POST', path: '/events', body: { name: 'ev', channels: ['a'], data: '{}', socket_id: 'not-a-socket' } });
    assert.equal(res.status, 400, res.text);
    assertErrorBody(res.body);
  });
});
