// Client events: who gets them, who does not, and when the relay refuses them.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { app, it, nextEvent, sleep, subscribe, uniq, useRelay } from '../lib/index.js';

const main = app(1001);
const noClientEvents = app(1002, { client_events: false });
const slow = app(1003, { client_events_per_second: 2 });

const relay = useRelay({ apps: [main, noClientEvents, slow] });

/** A 4301-range error or an error with no code: how a refused client event is reported. */
function assertRefusal(frame) {
  assert.equal(frame.event, 'pusher:error');
  assert.equal(typeof frame.data.message, 'string');
  assert.ok(frame.data.message.length > 0);
  assert.ok(frame.data.code === null || (frame.data.code >= 4300 && frame.data.code <= 4399), `code ${frame.data.code}`);
}

describe('delivery', () => {
  it('delivers a client event to the other subscribers and never echoes it to the sender', async () => {
    const name = uniq('private-chat');
    const alice = relay.pusher();
    const bob = relay.pusher();
    const carol = relay.pusher();
    const [a, b, c] = await Promise.all([subscribe(alice, name), subscribe(bob, name), subscribe(carol, name)]);
    assert.equal(a.trigger('client-typing', { who: 'alice', n: 1 }), true);
    const [atBob, atCarol] = await Promise.all([b.log.waitFor('client-typing'), c.log.waitFor('client-typing')]);
    assert.deepEqual(atBob.data, { who: 'alice', n: 1 });
    assert.deepEqual(atCarol.data, { who: 'alice', n: 1 });
    // Control: an event published after the fan-out reaches alice; the echo would have come first.
    await relay.server().trigger(name, 'control', {});
    await a.log.waitFor('control');
    assert.equal(a.log.has('client-typing'), false, 'the sender must not get its own client event');
  });

  it('tags client events on presence channels with the sender\'s user_id', async () => {
    const name = uniq('presence-chat');
    const alice = relay.pusher({ user: { id: 'alice', info: { name: 'Alice' } } });
    const bob = relay.pusher({ user: { id: 'bob', info: { name: 'Bob' } } });
    const [a, b] = await Promise.all([subscribe(alice, name), subscribe(bob, name)]);
    a.trigger('client-wave', { hi: true });
    const { data, metadata } = await nextEvent(b, 'client-wave');
    assert.deepEqual(data, { hi: true });
    assert.equal(metadata.user_id, 'alice');
  });

  it('sends the client event on the wire with data as a string', async () => {
    const name = uniq('private-wire');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-move', { x: 1, y: 2 });
    const frame = await receiver.next({ event: 'client-move', channel: name });
    const wire = JSON.parse(frame.raw);
    assert.equal(typeof wire.data, 'string');
    assert.deepEqual(JSON.parse(wire.data), { x: 1, y: 2 });
  });

  it('does not relay a client event from a socket that is not subscribed to the channel', async () => {
    const name = uniq('private-outsider');
    const receiver = await relay.connect();
    await receiver.join(name);
    const outsider = await relay.connect();
    outsider.trigger(name, 'client-intrude', { n: 1 });
    await outsider.roundTrip();
    await relay.server().trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen('client-intrude'), []);
  });
});

describe('refusals', () => {
  it('refuses client events on a public channel', async () => {
    const name = uniq('public-chat');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-shout', { loud: true });
    assertRefusal(await sender.next('pusher:error'));
    await relay.server().trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen('client-shout'), []);
  });

  it('refuses client events on an encrypted channel', async () => {
    const name = uniq('private-encrypted-chat');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-leak', { plain: 'text' });
    assertRefusal(await sender.next('pusher:error'));
    await relay.server().trigger(name, 'control', { c: 1 });
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen('client-leak'), []);
  });

  it('refuses client events when the app disables them', async () => {
    const name = uniq('private-disabled');
    const sender = await relay.connect({ app: noClientEvents.id });
    const receiver = await relay.connect({ app: noClientEvents.id });
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-nope', {});
    assertRefusal(await sender.next('pusher:error'));
    await relay.server(noClientEvents.id).trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen('client-nope'), []);
  });

  it('the same client event goes through on the app that allows them (control for the above)', async () => {
    const name = uniq('private-enabled');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-nope', {});
    await receiver.next({ event: 'client-nope', channel: name });
    assert.deepEqual(sender.seen('pusher:error'), []);
  });

  it('rate-limits client events per connection with pusher:error 4301 (default 10/s)', async () => {
    const name = uniq('private-flood');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    for (let i = 0; i < 40; i++) sender.trigger(name, 'client-flood', { i });
    const error = await sender.next('pusher:error');
    assert.equal(error.data.code, 4301);
    await sender.roundTrip(); // every one of the 40 has been handled
    await relay.server().trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    const got = receiver.seen('client-flood').length;
    assert.ok(got >= 1, 'the first client events go through');
    assert.ok(got <= 20, `at most about one second's worth goes through, got ${got}`);
  });

  it('the rate limit is per app config: 2/s refuses the third event at once', async () => {
    const name = uniq('private-slow');
    const sender = await relay.connect({ app: slow.id });
    const receiver = await relay.connect({ app: slow.id });
    await sender.join(name);
    await receiver.join(name);
    for (let i = 0; i < 6; i++) sender.trigger(name, 'client-tick', { i });
    const error = await sender.next('pusher:error');
    assert.equal(error.data.code, 4301);
    await sender.roundTrip();
    await relay.server(slow.id).trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    const got = receiver.seen('client-tick').map((f) => f.data.i);
    assert.ok(got.length >= 1 && got.length <= 4, `delivered ${JSON.stringify(got)}`);
    assert.deepEqual(got, [...got].sort((x, y) => x - y));
  });

  it('limits each connection on its own: a second sender is not slowed by the first', async () => {
    const name = uniq('private-per-connection');
    const flooder = await relay.connect({ app: slow.id });
    const polite = await relay.connect({ app: slow.id });
    const receiver = await relay.connect({ app: slow.id });
    for (const s of [flooder, polite, receiver]) await s.join(name);
    for (let i = 0; i < 6; i++) flooder.trigger(name, 'client-flood', { i });
    await flooder.next('pusher:error');
    polite.trigger(name, 'client-polite', { ok: 1 });
    const got = await receiver.next({ event: 'client-polite', channel: name });
    assert.deepEqual(got.data, { ok: 1 });
    assert.deepEqual(polite.seen('pusher:error'), []);
  });

  it('lets a rate-limited connection send again after a pause', async () => {
    const name = uniq('private-recover');
    const sender = await relay.connect({ app: slow.id });
    const receiver = await relay.connect({ app: slow.id });
    await sender.join(name);
    await receiver.join(name);
    for (let i = 0; i < 6; i++) sender.trigger(name, 'client-burst', { i });
    await sender.next('pusher:error');
    await sleep(1500);
    sender.trigger(name, 'client-later', { ok: true });
    const later = await receiver.next({ event: 'client-later', channel: name });
    assert.deepEqual(later.data, { ok: true });
  });

  it('refuses a client event name longer than 200 characters', async () => {
    const name = uniq('private-longname');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    const long = 'client-' + 'x'.repeat(200);
    sender.trigger(name, long, {});
    assertRefusal(await sender.next('pusher:error'));
    await relay.server().trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen(long), []);
  });

  it('refuses a client event larger than 10 KB', async () => {
    const name = uniq('private-big');
    const sender = await relay.connect();
    const receiver = await relay.connect();
    await sender.join(name);
    await receiver.join(name);
    sender.trigger(name, 'client-big', { blob: 'x'.repeat(11 * 1024) });
    assertRefusal(await sender.next('pusher:error'));
    await relay.server().trigger(name, 'control', {});
    await receiver.next({ event: 'control', channel: name });
    assert.deepEqual(receiver.seen('client-big'), []);
  });
});
