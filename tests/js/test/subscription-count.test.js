// pusher:subscription_count: opt-in per app, every channel type except presence.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { app, it, subscribe, uniq, useRelay } from '../lib/index.js';

const main = app(1001);
const counted = app(1002, { subscription_count: true });

const relay = useRelay({ apps: [main, counted] });

const count = (n) => ({ where: (d) => d?.subscription_count === n });

describe('on an app that opts in', () => {
  it('tells every subscriber the count as it rises and falls', async () => {
    const name = uniq('audience');
    const first = relay.pusher({ app: counted.id });
    const a = await subscribe(first, name);
    await a.log.waitFor('pusher:subscription_count', count(1));

    const second = relay.pusher({ app: counted.id });
    const b = await subscribe(second, name);
    await a.log.waitFor('pusher:subscription_count', count(2));
    await b.log.waitFor('pusher:subscription_count', count(2));
    assert.equal(a.subscriptionCount, 2);

    const since = a.log.mark();
    second.disconnect();
    await a.log.waitFor('pusher:subscription_count', { ...count(1), since });
    assert.equal(a.subscriptionCount, 1);
  });

  it('counts on private channels too', async () => {
    const name = uniq('private-audience');
    const a = await subscribe(relay.pusher({ app: counted.id }), name);
    await subscribe(relay.pusher({ app: counted.id }), name);
    await a.log.waitFor('pusher:subscription_count', count(2));
  });

  it('sends pusher_internal:subscription_count on the wire with data as a string', async () => {
    const name = uniq('audience-wire');
    const sock = await relay.connect({ app: counted.id });
    await sock.join(name);
    const other = await relay.connect({ app: counted.id });
    await other.join(name);
    const frame = await sock.next((f) => f.event === 'pusher_internal:subscription_count' && f.channel === name && f.data.subscription_count === 2);
    assert.equal(JSON.parse(frame.raw).data, '{"subscription_count":2}');
  });

  it('never counts presence channels', async () => {
    const room = uniq('presence-audience');
    const a = await subscribe(relay.pusher({ app: counted.id, user: { id: 'a' } }), room);
    await subscribe(relay.pusher({ app: counted.id, user: { id: 'b' } }), room);
    await a.log.waitFor('pusher:member_added');
    await relay.server(counted.id).trigger(room, 'control', {});
    await a.log.waitFor('control');
    assert.equal(a.log.has('pusher:subscription_count'), false);
  });
});

describe('on an app that does not opt in', () => {
  it('sends no subscription_count at all', async () => {
    const name = uniq('quiet');
    const a = await subscribe(relay.pusher(), name);
    const b = await subscribe(relay.pusher(), name);
    await relay.server().trigger(name, 'control', {});
    await Promise.all([a.log.waitFor('control'), b.log.waitFor('control')]);
    assert.equal(a.log.has('pusher:subscription_count'), false);
    assert.equal(b.log.has('pusher:subscription_count'), false);
  });
});
