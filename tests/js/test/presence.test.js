// Presence: members are users, not connections; and the member caps.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { app, it, subscribe, subscribeLater, uniq, useRelay, waitUntil } from '../lib/index.js';

const main = app(1001);
const small = app(1002, { max_presence_members: 2 });

const relay = useRelay({ apps: [main, small] });

const alice = { id: 'alice', info: { name: 'Alice' } };
const bob = { id: 'bob', info: { name: 'Bob' } };
const carol = { id: 'carol', info: { name: 'Carol' } };

/** Waits until the relay has handled a disconnect: the marker channel only that tab joined is empty. */
async function vacated(name, appId) {
  await waitUntil(async () => (await relay.channelInfo(name, undefined, appId)).occupied === false, { what: `${name} to be vacated` });
}

describe('one user in two tabs', () => {
  it('counts distinct users, announces only the first tab and removes only with the last', async () => {
    const room = uniq('presence-room');
    const marker1 = uniq('tab1-marker');
    const marker2 = uniq('tab2-marker');

    const bobClient = relay.pusher({ user: bob });
    const bobRoom = await subscribe(bobClient, room);

    const tab1 = relay.pusher({ user: alice });
    const tab1Room = await subscribe(tab1, room);
    await subscribe(tab1, marker1);
    const added = await bobRoom.log.waitFor('pusher:member_added');
    assert.equal(added.data.id, 'alice');
    assert.deepEqual(added.data.info, { name: 'Alice' });

    const tab2 = relay.pusher({ user: alice });
    const tab2Room = await subscribe(tab2, room);
    await subscribe(tab2, marker2);
    assert.equal(tab2Room.members.count, 2, 'alice counts once');
    const ids = [];
    tab2Room.members.each((m) => ids.push(m.id));
    assert.deepEqual(ids.sort(), ['alice', 'bob']);

    // Control: an event published now reaches everyone after any member_added for tab 2 would have.
    await relay.server().trigger(room, 'control-1', {});
    await Promise.all([bobRoom, tab1Room, tab2Room].map((ch) => ch.log.waitFor('control-1')));
    assert.equal(bobRoom.log.all('pusher:member_added').length, 1, 'bob hears of alice once');
    assert.equal(tab1Room.log.has('pusher:member_added'), false, 'tab 1 is not told that alice joined');
    assert.equal(tab2Room.log.has('pusher:member_added'), false, 'the joining socket is not told of itself');

    tab1.disconnect();
    await vacated(marker1);
    await relay.server().trigger(room, 'control-2', {});
    await bobRoom.log.waitFor('control-2');
    assert.equal(bobRoom.log.has('pusher:member_removed'), false, 'alice is still there in tab 2');
    assert.equal(bobRoom.members.count, 2);

    tab2.disconnect();
    const removed = await bobRoom.log.waitFor('pusher:member_removed');
    assert.equal(removed.data.id, 'alice');
    assert.equal(bobRoom.members.count, 1);
    await vacated(marker2);
  });

  it('sends member_added and member_removed on the wire with the exact data', async () => {
    const room = uniq('presence-wire');
    const watcher = await relay.connect();
    await watcher.join(room, { presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
    const joiner = await relay.connect();
    const ok = await joiner.join(room, { presence: { user_id: 'carol', user_info: { name: 'Carol' } } });
    assert.equal(ok.data.presence.count, 2);
    const added = await watcher.next({ event: 'pusher_internal:member_added', channel: room });
    assert.equal(typeof JSON.parse(added.raw).data, 'string');
    assert.deepEqual(added.data, { user_id: 'carol', user_info: { name: 'Carol' } });
    joiner.unsubscribe(room);
    const removed = await watcher.next({ event: 'pusher_internal:member_removed', channel: room });
    assert.deepEqual(removed.data, { user_id: 'carol' });
    assert.deepEqual(joiner.seen('pusher_internal:member_added'), [], 'not sent to the joining socket');
  });

  it('removes a member on unsubscribe as well as on disconnect', async () => {
    const room = uniq('presence-unsub');
    const bobClient = relay.pusher({ user: bob });
    const bobRoom = await subscribe(bobClient, room);
    const carolClient = relay.pusher({ user: carol });
    await subscribe(carolClient, room);
    await bobRoom.log.waitFor('pusher:member_added');
    carolClient.unsubscribe(room);
    const removed = await bobRoom.log.waitFor('pusher:member_removed');
    assert.equal(removed.data.id, 'carol');
  });

  it('reports distinct users through the HTTP API while a user has two tabs', async () => {
    const room = uniq('presence-api');
    await subscribe(relay.pusher({ user: alice }), room);
    await subscribe(relay.pusher({ user: alice }), room);
    await subscribe(relay.pusher({ user: bob }), room);
    const info = await relay.channelInfo(room, 'user_count');
    assert.equal(info.occupied, true);
    assert.equal(info.user_count, 2);
    const res = await relay.server().get({ path: `/channels/${room}/users` });
    const { users } = await res.json();
    assert.deepEqual(users.map((u) => u.id).sort(), ['alice', 'bob']);
  });
});

describe('member cap', () => {
  it('refuses the member over the cap, lets a known user open another tab, and tells no one', async () => {
    const room = uniq('presence-full');
    const a = await subscribe(relay.pusher({ app: small.id, user: alice }), room);
    await subscribe(relay.pusher({ app: small.id, user: bob }), room);
    await a.log.waitFor('pusher:member_added');

    const third = await relay.connect({ app: small.id });
    third.subscribe(room, { presence: { user_id: 'carol', user_info: { name: 'Carol' } } });
    const refusal = await third.next((f) => (f.event === 'pusher:subscription_error' && f.channel === room) || f.event === 'pusher:error');
    assert.ok(refusal.data && typeof refusal.data === 'object', refusal.raw);
    assert.deepEqual(third.seen({ event: 'pusher_internal:subscription_succeeded', channel: room }), []);

    const aliceTab2 = relay.pusher({ app: small.id, user: alice });
    const tab2Room = await subscribe(aliceTab2, room);
    assert.equal(tab2Room.members.count, 2);

    await relay.server(small.id).trigger(room, 'control', {});
    await a.log.waitFor('control');
    assert.equal(a.log.all('pusher:member_added').length, 1, 'only bob was announced');
    const info = await relay.channelInfo(room, 'user_count', small.id);
    assert.equal(info.user_count, 2);
  });

  it('pusher-js sees the refusal as pusher:subscription_error on that channel', async () => {
    const room = uniq('presence-full-js');
    await subscribe(relay.pusher({ app: small.id, user: alice }), room);
    await subscribe(relay.pusher({ app: small.id, user: bob }), room);
    const client = relay.pusher({ app: small.id, user: carol });
    const channel = subscribeLater(client, room);
    const { data } = await channel.log.waitFor('pusher:subscription_error');
    assert.ok(data);
    assert.equal(channel.subscribed, false);
  });
});

describe('member info cap', () => {
  it('refuses user_info over 2 KB and accepts it under', async () => {
    const room = uniq('presence-info');
    const sock = await relay.connect();
    const big = { bio: 'x'.repeat(3000) };
    sock.subscribe(room, { presence: { user_id: 'verbose', user_info: big } });
    const refusal = await sock.next((f) => (f.event === 'pusher:subscription_error' && f.channel === room) || f.event === 'pusher:error');
    assert.ok(refusal);
    assert.deepEqual(sock.seen({ event: 'pusher_internal:subscription_succeeded', channel: room }), []);

    const ok = await sock.join(room, { presence: { user_id: 'concise', user_info: { bio: 'x'.repeat(1500) } } });
    assert.deepEqual(ok.data.presence.ids, ['concise']);
  });
});
