// Every channel type through pusher-js and the official server SDK.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { SETTLE, app, connected, it, sleep, subscribe, subscribeLater, uniq, useRelay, waitUntil } from '../lib/index.js';

const main = app(1001);
const shortCache = app(1002, { cache_ttl_s: 1 });

const relay = useRelay({ apps: [main, shortCache] });

describe('public channels', () => {
  it('delivers a server event with its data intact to every subscriber', async () => {
    const name = uniq('prices');
    const alice = relay.pusher();
    const bob = relay.pusher();
    const [a, b] = await Promise.all([subscribe(alice, name), subscribe(bob, name)]);
    const payload = { symbol: 'ACME', price: 12.5, tags: ['a', 'b'], nested: { ok: true }, text: 'ünïcødé "quoted"' };
    await relay.server().trigger(name, 'tick', payload);
    const [ea, eb] = await Promise.all([a.log.waitFor('tick'), b.log.waitFor('tick')]);
    assert.deepEqual(ea.data, payload);
    assert.deepEqual(eb.data, payload);
  });

  it('delivers events in the order they were published', async () => {
    const name = uniq('ordered');
    const client = relay.pusher();
    const channel = await subscribe(client, name);
    const server = relay.server();
    for (let i = 0; i < 20; i++) await server.trigger(name, 'n', { i });
    await channel.log.waitFor('n', { where: (d) => d.i === 19 });
    assert.deepEqual(channel.log.all('n').map((e) => e.data.i), [...Array(20).keys()]);
  });

  it('does not deliver to a channel the client left', async () => {
    const name = uniq('leave');
    const control = uniq('leave-control');
    const client = relay.pusher();
    const channel = await subscribe(client, name);
    const ctl = await subscribe(client, control);
    client.unsubscribe(name);
    // pusher-js sends the unsubscribe and forgets the channel; wait until the relay agrees.
    await waitUnoccupied(name);
    await relay.server().trigger(name, 'late', {});
    await relay.server().trigger(control, 'ping', {});
    await ctl.log.waitFor('ping');
    assert.equal(channel.log.has('late'), false);
  });

  it('relays a string payload as the same string', async () => {
    const name = uniq('strings');
    const sock = await relay.connect();
    await sock.join(name);
    await relay.server().trigger(name, 'plain', 'just text');
    const frame = await sock.next({ event: 'plain', channel: name });
    assert.equal(JSON.parse(frame.raw).data, 'just text');
  });
});

describe('apps are isolated', () => {
  it('does not deliver one app\'s event to another app\'s subscriber of the same channel name', async () => {
    const name = uniq('shared-name');
    const theirs = await relay.connect({ app: shortCache.id });
    await theirs.join(name);
    const ours = await relay.connect({ app: main.id });
    await ours.join(name);
    await relay.server(main.id).trigger(name, 'for-main', {});
    await ours.next({ event: 'for-main', channel: name });
    await relay.server(shortCache.id).trigger(name, 'control', {});
    await theirs.next({ event: 'control', channel: name });
    assert.deepEqual(theirs.seen('for-main'), []);
  });

  it('refuses a channel signature made with another app\'s secret', async () => {
    const name = uniq('private-tenant');
    const sock = await relay.connect({ app: main.id });
    const { auth } = relay.server(shortCache.id).authorizeChannel(sock.socketId, name);
    sock.subscribe(name, { auth: `${main.key}:${auth.split(':')[1]}` });
    const err = await sock.next({ event: 'pusher:subscription_error', channel: name });
    assert.equal(err.data.type, 'AuthError');
  });
});

describe('private channels', () => {
  it('subscribes with a signature from the server SDK and receives events', async () => {
    const name = uniq('private-orders');
    const client = relay.pusher();
    const channel = await subscribe(client, name);
    await relay.server().trigger(name, 'order-created', { id: 7 });
    const { data } = await channel.log.waitFor('order-created');
    assert.deepEqual(data, { id: 7 });
  });

  it('refuses a subscription without any auth', async () => {
    const name = uniq('private-noauth');
    const sock = await relay.connect();
    sock.send({ event: 'pusher:subscribe', data: { channel: name } });
    const err = await sock.next((f) => (f.event === 'pusher:subscription_error' && f.channel === name) || f.event === 'pusher:error');
    assert.ok(err);
    await relay.server().trigger(name, 'secret', {});
    const control = uniq('control');
    await sock.join(control);
    await relay.server().trigger(control, 'ping', {});
    await sock.next({ event: 'ping', channel: control });
    assert.deepEqual(sock.seen({ event: 'secret' }), []);
  });

  it('refuses a signature made for another socket', async () => {
    const name = uniq('private-stolen');
    const owner = await relay.connect();
    const thief = await relay.connect();
    const stolen = relay.server().authorizeChannel(owner.socketId, name).auth;
    thief.subscribe(name, { auth: stolen });
    const err = await thief.next({ event: 'pusher:subscription_error', channel: name });
    assert.equal(err.data.type, 'AuthError');
  });
});

describe('a bad channel signature costs only that subscription', () => {
  it('emits pusher:subscription_error on the bad channel while the others keep working (pusher-js)', async () => {
    const good = uniq('private-good');
    const bad = uniq('private-bad');
    const pub = uniq('public');
    const client = relay.pusher({ badAuth: (name) => name === bad });
    const badChannel = subscribeLater(client, bad);
    const goodChannel = await subscribe(client, good);
    const publicChannel = await subscribe(client, pub);
    const { data } = await badChannel.log.waitFor('pusher:subscription_error');
    assert.equal(data.type, 'AuthError');
    assert.equal(data.status, 401);
    assert.equal(typeof data.error, 'string');
    assert.equal(badChannel.subscribed, false);
    assert.equal(client.connection.state, 'connected');
    const server = relay.server();
    await server.trigger(bad, 'leak', { n: 1 });
    await server.trigger([good, pub], 'still-here', { n: 2 });
    assert.deepEqual((await goodChannel.log.waitFor('still-here')).data, { n: 2 });
    assert.deepEqual((await publicChannel.log.waitFor('still-here')).data, { n: 2 });
    assert.equal(badChannel.log.has('leak'), false);
  });

  it('sends the exact subscription_error frame on the wire and keeps the socket', async () => {
    const good = uniq('private-good');
    const bad = uniq('presence-bad');
    const sock = await relay.connect();
    await sock.join(good);
    const signed = relay.server().authorizeChannel(sock.socketId, bad, { user_id: 'u1', user_info: { name: 'U' } });
    sock.subscribe(bad, { auth: signed.auth, channelData: JSON.stringify({ user_id: 'u2' }) });
    const err = await sock.next({ event: 'pusher:subscription_error', channel: bad });
    assert.equal(typeof JSON.parse(err.raw).data, 'string');
    assert.equal(err.data.type, 'AuthError');
    assert.equal(err.data.status, 401);
    assert.ok(sock.isOpen);
    await relay.server().trigger(good, 'after', { ok: 1 });
    const ev = await sock.next({ event: 'after', channel: good });
    assert.deepEqual(ev.data, { ok: 1 });
    assert.deepEqual(sock.seen({ event: 'pusher_internal:subscription_succeeded', channel: bad }), []);
  });

  it('refuses a signature computed with another app\'s key prefix', async () => {
    const name = uniq('private-key');
    const sock = await relay.connect();
    const { auth } = relay.server().authorizeChannel(sock.socketId, name);
    sock.subscribe(name, { auth: auth.replace(/^[^:]+:/, 'otherkey:') });
    const err = await sock.next({ event: 'pusher:subscription_error', channel: name });
    assert.equal(err.data.type, 'AuthError');
  });
});

describe('presence channels', () => {
  it('lists the members with their info and tells pusher-js who it is', async () => {
    const name = uniq('presence-room');
    const alice = relay.pusher({ user: { id: 'alice', info: { name: 'Alice' } } });
    const bob = relay.pusher({ user: { id: 'bob', info: { name: 'Bob' } } });
    await subscribe(alice, name);
    const channel = await subscribe(bob, name);
    assert.equal(channel.members.count, 2);
    assert.equal(channel.members.me.id, 'bob');
    assert.deepEqual(channel.members.me.info, { name: 'Bob' });
    const members = {};
    channel.members.each((m) => (members[m.id] = m.info));
    assert.deepEqual(members, { alice: { name: 'Alice' }, bob: { name: 'Bob' } });
  });

  it('sends the presence hash on the wire as ids, hash and count', async () => {
    const name = uniq('presence-wire');
    const alice = relay.pusher({ user: { id: 'alice', info: { name: 'Alice' } } });
    await subscribe(alice, name);
    const sock = await relay.connect();
    const ok = await sock.join(name, { presence: { user_id: 'carol', user_info: { role: 'admin' } } });
    assert.equal(typeof JSON.parse(ok.raw).data, 'string');
    const { presence } = ok.data;
    assert.deepEqual([...presence.ids].sort(), ['alice', 'carol']);
    assert.deepEqual(presence.hash, { alice: { name: 'Alice' }, carol: { role: 'admin' } });
    assert.equal(presence.count, 2);
  });

  it('announces a joining and a leaving member to the others', async () => {
    const name = uniq('presence-lobby');
    const alice = relay.pusher({ user: { id: 'alice', info: { name: 'Alice' } } });
    const room = await subscribe(alice, name);
    const bob = relay.pusher({ user: { id: 'bob', info: { name: 'Bob' } } });
    await subscribe(bob, name);
    const added = await room.log.waitFor('pusher:member_added');
    assert.equal(added.data.id, 'bob');
    assert.deepEqual(added.data.info, { name: 'Bob' });
    bob.disconnect();
    const removed = await room.log.waitFor('pusher:member_removed');
    assert.equal(removed.data.id, 'bob');
    assert.equal(room.members.count, 1);
  });

  it('accepts a numeric user_id sent as a number-like string and info-less members', async () => {
    const name = uniq('presence-plain');
    const sock = await relay.connect();
    const ok = await sock.join(name, { presence: { user_id: '42' } });
    assert.deepEqual(ok.data.presence.ids, ['42']);
    assert.equal(ok.data.presence.count, 1);
  });
});

describe('private-encrypted channels', () => {
  it('carries the SDK\'s ciphertext end to end: pusher-js decrypts, the wire shows no plaintext', async () => {
    const name = uniq('private-encrypted-vault');
    const client = relay.pusher();
    const channel = await subscribe(client, name);
    const spy = await relay.connect();
    await spy.join(name);
    const secret = { pin: '2468', note: 'plaintext-marker' };
    await relay.server().trigger(name, 'sealed', secret);
    const { data } = await channel.log.waitFor('sealed');
    assert.deepEqual(data, secret, 'pusher-js decrypted what the SDK encrypted');
    const frame = await spy.next({ event: 'sealed', channel: name });
    assert.equal(frame.raw.includes('plaintext-marker'), false, 'the relay only sees ciphertext');
    assert.deepEqual(Object.keys(frame.data).sort(), ['ciphertext', 'nonce']);
    assert.equal(Buffer.from(frame.data.nonce, 'base64').length, 24);
  });

  it('uses the same master key on both sides (a wrong key cannot decrypt)', async () => {
    const name = uniq('private-encrypted-wrongkey');
    const client = relay.pusher();
    const channel = await subscribe(client, name);
    const other = relay.server(undefined, { encryptionMasterKeyBase64: Buffer.alloc(32, 9).toString('base64') });
    await other.trigger(name, 'unreadable', { x: 1 });
    await relay.server().trigger(name, 'readable', { x: 2 });
    assert.deepEqual((await channel.log.waitFor('readable')).data, { x: 2 });
    assert.equal(channel.log.has('unreadable'), false);
  });
});

describe('cache channels', () => {
  it('sends pusher:cache_miss right after subscribing when nothing is cached', async () => {
    const name = uniq('cache-empty');
    const sock = await relay.connect();
    await sock.join(name);
    const miss = await sock.next({ event: 'pusher:cache_miss', channel: name });
    assert.equal(miss.channel, name);
  });

  it('replays the last event to a new subscriber, and only the last', async () => {
    const name = uniq('cache-prices');
    const server = relay.server();
    await server.trigger(name, 'price', { v: 1 });
    await server.trigger(name, 'price', { v: 2 });
    const client = relay.pusher();
    const channel = subscribeLater(client, name);
    const { data } = await channel.log.waitFor('price');
    assert.deepEqual(data, { v: 2 });
    await server.trigger(name, 'price', { v: 3 });
    await channel.log.waitFor('price', { where: (d) => d.v === 3 });
    assert.deepEqual(channel.log.all('price').map((e) => e.data.v), [2, 3]);
    assert.equal(channel.log.has('pusher:cache_miss'), false);
  });

  it('replays on the wire right after subscription_succeeded, with no cache_miss', async () => {
    const name = uniq('cache-wire');
    await relay.server().trigger(name, 'state', { mode: 'on' });
    const sock = await relay.connect();
    sock.subscribe(name);
    const ok = await sock.next({ event: 'pusher_internal:subscription_succeeded', channel: name });
    assert.ok(ok);
    const replay = await sock.next({ channel: name });
    assert.equal(replay.event, 'state');
    assert.equal(JSON.parse(replay.raw).data, '{"mode":"on"}');
    await sleep(SETTLE);
    assert.deepEqual(sock.seen('pusher:cache_miss'), []);
  });

  it('caches on private-cache- channels too', async () => {
    const name = uniq('private-cache-config');
    await relay.server().trigger(name, 'config', { level: 3 });
    const client = relay.pusher();
    const channel = subscribeLater(client, name);
    const { data } = await channel.log.waitFor('config');
    assert.deepEqual(data, { level: 3 });
  });

  it('replays on presence-cache- channels to a joining member', async () => {
    const name = uniq('presence-cache-board');
    await relay.server().trigger(name, 'board', { cells: [1, 2] });
    const client = relay.pusher({ user: { id: 'viewer' } });
    const channel = subscribeLater(client, name);
    const { data } = await channel.log.waitFor('board');
    assert.deepEqual(data, { cells: [1, 2] });
    assert.equal(channel.members.count, 1);
  });

  it('replays the ciphertext on private-encrypted-cache- channels, and pusher-js decrypts it', async () => {
    const name = uniq('private-encrypted-cache-keys');
    await relay.server().trigger(name, 'key', { k: 'sealed-value' });
    const client = relay.pusher();
    const channel = subscribeLater(client, name);
    const { data } = await channel.log.waitFor('key');
    assert.deepEqual(data, { k: 'sealed-value' });
    const spy = await relay.connect();
    await spy.join(name);
    const replay = await spy.next({ event: 'key', channel: name });
    assert.equal(replay.raw.includes('sealed-value'), false);
  });

  it('forgets the cached event after the app\'s cache_ttl_s', async () => {
    const name = uniq('cache-short');
    await relay.server(shortCache.id).trigger(name, 'value', { v: 1 });
    const fresh = await relay.connect({ app: shortCache.id });
    fresh.subscribe(name);
    const replay = await fresh.next({ channel: name, event: 'value' });
    assert.deepEqual(replay.data, { v: 1 }, 'cached within the TTL');
    await sleep(2200);
    const late = await relay.connect({ app: shortCache.id });
    await late.join(name);
    await late.next({ event: 'pusher:cache_miss', channel: name });
    assert.deepEqual(late.seen('value'), []);
  });

  it('keeps caches per app', async () => {
    const name = uniq('cache-tenant');
    await relay.server(main.id).trigger(name, 'mine', { app: main.id });
    const other = await relay.connect({ app: shortCache.id });
    await other.join(name);
    await other.next({ event: 'pusher:cache_miss', channel: name });
    assert.deepEqual(other.seen('mine'), []);
  });

  it('does not cache on a plain channel', async () => {
    const name = uniq('plain-nocache');
    await relay.server().trigger(name, 'old', { v: 1 });
    const sock = await relay.connect();
    await sock.join(name);
    await relay.server().trigger(name, 'new', { v: 2 });
    await sock.next({ event: 'new', channel: name });
    assert.deepEqual(sock.seen('old'), []);
    assert.deepEqual(sock.seen('pusher:cache_miss'), []);
  });
});

async function waitUnoccupied(name) {
  await waitUntil(async () => (await relay.channelInfo(name)).occupied === false, { what: `${name} to be vacated` });
}

// pusher-js must have been connected for these tests to mean anything.
it('pusher-js connects to this relay', async () => {
  await connected(relay.pusher());
});
