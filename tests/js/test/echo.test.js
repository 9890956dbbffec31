// Laravel Echo on top of pusher-js, as a Laravel front end uses it.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import Echo from 'laravel-echo';

import { SOON, app, connected, it, uniq, useRelay, withTimeout } from '../lib/index.js';

const relay = useRelay({ apps: [app(1001)] });

/** An Echo instance on a pusher-js client made for this relay. */
function echo(options = {}) {
  const client = relay.pusher(options);
  const instance = new Echo({ broadcaster: 'pusher', key: client.key, client });
  relay.track({ close: () => instance.disconnect() });
  return instance;
}

/** A promise for the next call of an Echo callback, and the callback to hand to Echo. */
function callback(label) {
  const calls = [];
  let consumed = 0;
  let wake = () => {};
  const fn = (...args) => {
    calls.push(args);
    wake();
  };
  fn.calls = calls;
  /** The next call not yet returned by `next` (made already or still to come). */
  fn.next = (n = ++consumed) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => (calls.length >= n ? resolve(calls[n - 1]) : (wake = check));
        check();
      }),
      SOON,
      `${label} call #${n}`,
    );
  return fn;
}

/** Resolves once Echo's channel is subscribed. */
function subscribedEcho(channel, label) {
  const done = callback(`${label} subscribed`);
  channel.subscribed(done);
  channel.error((e) => done(new Error(JSON.stringify(e))));
  return done.next(1).then(([err]) => {
    if (err instanceof Error) throw err;
    return channel;
  });
}

describe('Laravel Echo', () => {
  it('listens on a public channel, with the leading dot for a raw event name', async () => {
    const name = uniq('orders');
    const shipped = callback('order.shipped');
    await subscribedEcho(echo().channel(name).listen('.order.shipped', shipped), name);
    await relay.server().trigger(name, 'order.shipped', { id: 1 });
    const [data] = await shipped.next();
    assert.deepEqual(data, { id: 1 });
  });

  it('listens with the App\\Events namespace Laravel broadcasts under', async () => {
    const name = uniq('orders');
    const shipped = callback('OrderShipped');
    await subscribedEcho(echo().channel(name).listen('OrderShipped', shipped), name);
    await relay.server().trigger(name, 'App\\Events\\OrderShipped', { id: 2 });
    const [data] = await shipped.next();
    assert.deepEqual(data, { id: 2 });
  });

  it('listens on a private channel (private- prefix added by Echo)', async () => {
    const name = uniq('orders.7');
    const status = callback('status');
    await subscribedEcho(echo().private(name).listen('.status', status), name);
    await relay.server().trigger(`private-${name}`, 'status', { state: 'paid' });
    const [data] = await status.next();
    assert.deepEqual(data, { state: 'paid' });
  });

  it('reports a refused private subscription through .error()', async () => {
    const name = uniq('forbidden');
    const failed = callback('error');
    echo({ badAuth: () => true }).private(name).error(failed);
    const [err] = await failed.next();
    assert.equal(err.type, 'AuthError');
  });

  it('whispers on a private channel to the others, not to itself', async () => {
    const name = uniq('chat');
    const alice = echo();
    const bob = echo();
    const aliceHeard = callback('alice whisper');
    const bobHeard = callback('bob whisper');
    const aChan = await subscribedEcho(alice.private(name).listenForWhisper('typing', aliceHeard), 'alice');
    await subscribedEcho(bob.private(name).listenForWhisper('typing', bobHeard), 'bob');
    aChan.whisper('typing', { who: 'alice' });
    const [data] = await bobHeard.next();
    assert.deepEqual(data, { who: 'alice' });
    const control = callback('control');
    aChan.listen('.control', control);
    await relay.server().trigger(`private-${name}`, 'control', {});
    await control.next();
    assert.equal(aliceHeard.calls.length, 0);
  });

  it('joins a presence channel: here, joining, whisper and leaving', async () => {
    const room = uniq('room');
    const alice = echo({ user: { id: 'alice', info: { name: 'Alice' } } });
    const here = callback('here');
    const joining = callback('joining');
    const leaving = callback('leaving');
    const whispers = callback('whisper');
    const aRoom = alice.join(room).here(here).joining(joining).leaving(leaving).listenForWhisper('typing', whispers);
    const [members] = await here.next();
    assert.deepEqual(members, [{ name: 'Alice' }]);

    const bob = echo({ user: { id: 'bob', info: { name: 'Bob' } } });
    const bobHere = callback('bob here');
    const bRoom = bob.join(room).here(bobHere);
    const [bobMembers] = await bobHere.next();
    assert.deepEqual(bobMembers.map((m) => m.name).sort(), ['Alice', 'Bob']);
    const [joined] = await joining.next();
    assert.deepEqual(joined, { name: 'Bob' });

    bRoom.whisper('typing', { who: 'bob' });
    const [typing] = await whispers.next();
    assert.deepEqual(typing, { who: 'bob' });

    bob.leave(room);
    const [left] = await leaving.next();
    assert.deepEqual(left, { name: 'Bob' });
    assert.ok(aRoom);
  });

  it('hands its socket id to the backend so a broadcast can skip the sender (toOthers)', async () => {
    const name = uniq('feed');
    const sender = echo();
    const other = echo();
    const senderGot = callback('sender');
    const otherGot = callback('other');
    await subscribedEcho(sender.channel(name).listen('.post', senderGot), 'sender');
    await subscribedEcho(other.channel(name).listen('.post', otherGot), 'other');
    await connected(sender.connector.pusher);
    const socketId = sender.socketId();
    assert.match(socketId, /^\d+\.\d+$/);
    await relay.server().trigger(name, 'post', { n: 1 }, { socket_id: socketId });
    await otherGot.next();
    const control = callback('control');
    sender.channel(name).listen('.control', control);
    await relay.server().trigger(name, 'control', {});
    await control.next();
    assert.equal(senderGot.calls.length, 0);
  });
});
