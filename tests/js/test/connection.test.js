// The connection itself: handshake, ping, and how the relay refuses connections and frames.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { SETTLE, app, connected, it, sleep, uniq, useRelay, waitUntil } from '../lib/index.js';

const main = app(1001);
const disabled = app(1002, { enabled: false });
const quota = app(1003, { max_connections: 1 });

const relay = useRelay({ apps: [main, disabled, quota] });

describe('handshake', () => {
  it('sends connection_established with a socket id and an activity timeout, data as a string', async () => {
    const sock = await relay.raw();
    const frame = await sock.established();
    assert.equal(typeof JSON.parse(frame.raw).data, 'string', 'server→client data must be a JSON string');
    assert.match(frame.data.socket_id, /^\d+\.\d+$/);
    assert.ok(Number.isInteger(frame.data.activity_timeout) && frame.data.activity_timeout > 0, frame.raw);
  });

  it('gives every connection its own socket id', async () => {
    const a = await relay.connect();
    const b = await relay.connect();
    assert.notEqual(a.socketId, b.socketId);
  });

  it('answers pusher:ping with pusher:pong', async () => {
    const sock = await relay.connect();
    sock.send({ event: 'pusher:ping', data: {} });
    const pong = await sock.next('pusher:pong');
    assert.equal(pong.event, 'pusher:pong');
  });

  it('connects pusher-js and hands it the socket id', async () => {
    const client = relay.pusher();
    const socketId = await connected(client);
    assert.match(socketId, /^\d+\.\d+$/);
  });
});

/** A connection to an app with a quota, once a slot is free (earlier tests' sockets may still
 * be closing). */
function admitted(appId) {
  return waitUntil(
    async () => {
      const s = await relay.raw({ app: appId });
      const frame = await Promise.race([s.next('pusher:connection_established').catch(() => null), s.closed.then(() => null)]);
      if (frame) s.socketId = frame.data.socket_id;
      return frame ? s : null;
    },
    { what: `a connection to app ${appId} to be admitted` },
  );
}

describe('refused connections', () => {
  it('closes an unknown app key with 4001', async () => {
    const sock = await relay.raw({ key: 'no-such-key' });
    const { code } = await sock.closedWithin();
    assert.equal(code, 4001);
    assert.equal(sock.seen('pusher:connection_established').length, 0);
  });

  /** pusher-js must give up (no reconnect loop) on a 4000-4099 close. */
  async function assertGivesUp(client, code) {
    await waitUntil(() => client.states.has('disconnected') || client.states.has('failed'), { what: 'pusher-js to give up' });
    const errors = client.states.all('error');
    const codes = errors.map((e) => e.data?.error?.data?.code);
    assert.ok(codes.includes(code), `connection errors: ${JSON.stringify(errors)}`);
    const attempts = client.states.all('connecting').length;
    await sleep(2500);
    assert.equal(client.states.all('connecting').length, attempts, `reconnected: ${client.states.events().join(' → ')}`);
    assert.notEqual(client.connection.state, 'connected');
  }

  it('pusher-js does not reconnect after 4001 (unknown key)', async () => {
    await assertGivesUp(relay.pusher({ key: 'no-such-key' }), 4001);
  });

  it('pusher-js does not reconnect after 4003 (disabled app)', async () => {
    await assertGivesUp(relay.pusher({ app: disabled.id }), 4003);
  });

  it('pusher-js does not reconnect after 4004 (over quota)', async () => {
    const holder = await admitted(quota.id);
    await assertGivesUp(relay.pusher({ app: quota.id }), 4004);
    assert.ok(holder.isOpen);
  });

  it('closes a disabled app with 4003', async () => {
    const sock = await relay.raw({ app: disabled.id });
    const { code } = await sock.closedWithin();
    assert.equal(code, 4003);
    assert.equal(sock.seen('pusher:connection_established').length, 0);
  });

  it('closes a connection over the app quota with 4004, and admits one again when a slot frees', async () => {
    const first = await admitted(quota.id);
    const second = await relay.raw({ app: quota.id });
    const { code } = await second.closedWithin();
    assert.equal(code, 4004);
    assert.ok(first.isOpen, 'the connection within quota stays open');
    await first.roundTrip();
    const otherApp = await relay.connect({ app: main.id });
    await otherApp.roundTrip();
    assert.ok(otherApp.isOpen, 'another app is not limited by this app\'s quota');
    await first.leave();
    const third = await admitted(quota.id);
    assert.ok(third.isOpen);
  });
});

describe('frames a client may not send', () => {
  for (const event of ['pusher_internal:member_added', 'pusher_internal:subscription_succeeded', 'pusher:connection_established', 'pusher:error']) {
    it(`refuses a client frame named ${event} and relays nothing`, async () => {
      const channel = uniq('private-reserved');
      const victim = await relay.connect();
      await victim.join(channel);
      const attacker = await relay.connect();
      await attacker.join(channel);
      attacker.send({ event, channel, data: { user_id: 'mallory', user_info: {} } });
      const error = await attacker.next('pusher:error');
      assert.equal(typeof error.data.message, 'string');
      assert.ok(error.data.message.length > 0);
      // Positive control: an event published after the refusal reaches the victim.
      await relay.server().trigger(channel, 'control', { n: 1 });
      await victim.next({ event: 'control', channel });
      // The injected frame is recognisable by its data; the victim's own protocol frames are not it.
      assert.deepEqual(victim.seen((f) => f.raw.includes('mallory')), [], 'the reserved frame must not be relayed');
    });
  }

  it('refuses an event that is neither a protocol event nor client-*', async () => {
    const channel = uniq('private-plain');
    const victim = await relay.connect();
    await victim.join(channel);
    const sender = await relay.connect();
    await sender.join(channel);
    sender.send({ event: 'my-event', channel, data: {} });
    await sender.next('pusher:error');
    await relay.server().trigger(channel, 'control', {});
    await victim.next({ event: 'control', channel });
    assert.deepEqual(victim.seen('my-event'), []);
  });

  it('survives a frame that is not JSON with an error, not a crash', async () => {
    const sock = await relay.connect();
    sock.send('this is not json');
    const reply = await Promise.race([sock.next('pusher:error').then(() => 'error'), sock.closed.then(({ code }) => `closed ${code}`)]);
    assert.ok(reply === 'error' || /^closed 4\d\d\d$/.test(reply), reply);
    // Other connections are unaffected.
    const other = await relay.connect();
    await other.roundTrip();
  });
});

describe('invalid channel names', () => {
  const names = [
    ['a space', 'bad channel'],
    ['a character outside the set', 'bad!channel'],
    ['201 characters', 'c'.repeat(201)],
    ['the server-to-user prefix', '#server-to-user-42'],
    ['an empty name', ''],
  ];
  for (const [what, name] of names) {
    it(`refuses to subscribe to a name with ${what}, and the socket keeps working`, async () => {
      const sock = await relay.connect();
      sock.subscribe(name);
      const refusal = await sock.next((f) => (f.event === 'pusher:subscription_error' && f.channel === name) || f.event === 'pusher:error');
      assert.ok(refusal, 'an error frame');
      const good = uniq('fine');
      await sock.join(good);
      assert.deepEqual(sock.seen({ event: 'pusher_internal:subscription_succeeded', channel: name }), []);
      await relay.server().trigger(good, 'control', {});
      await sock.next({ event: 'control', channel: good });
    });
  }

  it('accepts a 200-character name made of every allowed character', async () => {
    const base = 'Az09_-=@,.;';
    const name = (base + 'x'.repeat(200)).slice(0, 200);
    const sock = await relay.connect();
    await sock.join(name);
    await relay.server().post({ path: '/events', body: { name: 'ev', channels: [name], data: '{"ok":true}' } });
    const ev = await sock.next({ event: 'ev', channel: name });
    assert.deepEqual(ev.data, { ok: true });
  });
});

describe('public channels over the raw protocol', () => {
  it('subscribes with subscription_succeeded on the exact channel and stops after unsubscribe', async () => {
    const channel = uniq('news');
    const sock = await relay.connect();
    const ok = await sock.join(channel);
    assert.equal(ok.channel, channel);
    await relay.server().trigger(channel, 'headline', { title: 'one' });
    const ev = await sock.next({ event: 'headline', channel });
    assert.equal(JSON.parse(ev.raw).data, '{"title":"one"}', 'data is relayed as the exact string');
    sock.unsubscribe(channel);
    await sock.roundTrip();
    await relay.server().trigger(channel, 'headline', { title: 'two' });
    const control = uniq('control');
    await sock.join(control);
    await relay.server().trigger(control, 'ping', {});
    await sock.next({ event: 'ping', channel: control });
    await sleep(SETTLE);
    assert.equal(sock.seen({ event: 'headline', channel }).length, 1, 'nothing after unsubscribe');
  });
});
