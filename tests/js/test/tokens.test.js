// Account-scoped tokens through pusher-js: a custom authorizer that hands the relay a JWT,
// presence identities from the token, and a token that expires mid-connection.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe } from 'node:test';

import { app, connected, it, subscribe, subscribed, useRelay, waitUntil } from '../lib/index.js';

// token_leeway_s = 0 so that a token's expiry is felt at once.
const APP = app(3001, { token_leeway_s: 0 });
const relay = useRelay({ apps: [APP] });

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 token signed with the app secret, as a backend would mint it. */
function jwt(claims, secret = APP.secret) {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const viewer = (extra = {}) => ({ app: APP.id, sub: 'viewer-1', exp: now() + 3600, subscribe: ['private-sonde-host.*', 'presence-ops'], publish: [], ...extra });

/**
 * pusher-js whose authorizer returns whatever `mint()` gives, counting its calls. pusher-js
 * wants `channel_data` with the member id on presence channels; the relay checks that it
 * names the token's subject.
 */
function tokenClient(mint) {
  const calls = [];
  const client = relay.pusher({
    channelAuthorization: {
      customHandler: ({ channelName }, callback) => {
        calls.push(channelName);
        const auth = mint(channelName);
        if (!channelName.startsWith('presence-')) return callback(null, { auth });
        const { sub } = JSON.parse(Buffer.from(auth.split('.')[1], 'base64url'));
        return callback(null, { auth, channel_data: JSON.stringify({ user_id: sub }) });
      },
    },
  });
  return { client, calls };
}

describe('JWT authorisation through pusher-js', () => {
  it('a custom authorizer returning a viewer JWT subscribes and receives events', async () => {
    const { client } = tokenClient(() => jwt(viewer()));
    const ch = await subscribe(client, 'private-sonde-host.web1');
    await relay.server().trigger('private-sonde-host.web1', 'hello', { n: 1 });
    const { data } = await ch.log.waitFor('hello');
    assert.deepEqual(data, { n: 1 });
  });

  it('a token outside its capabilities fails only that subscription', async () => {
    const { client } = tokenClient(() => jwt(viewer()));
    const other = client.subscribe('private-billing');
    await assert.rejects(subscribed(other), (e) => e.data.status === 401 && /does not allow subscribing/.test(e.data.error));
    await subscribe(client, 'private-sonde-host.web2');
  });

  it('a token for another app or with a bad signature is refused', async () => {
    const { client } = tokenClient((name) => (name.endsWith('a') ? jwt({ ...viewer(), app: '9' }) : jwt(viewer(), 'wrong')));
    const a = subscribed(client.subscribe('private-sonde-host.a'));
    const b = subscribed(client.subscribe('private-sonde-host.b'));
    await assert.rejects(a, (e) => /app 9/.test(e.data.error));
    await assert.rejects(b, (e) => /signature/.test(e.data.error));
  });

  it('presence members come from the token subject and user_info', async () => {
    const alice = tokenClient(() => jwt(viewer({ sub: 'alice', user_info: { name: 'Alice' } }))).client;
    const bob = tokenClient(() => jwt(viewer({ sub: 'bob' }))).client;
    const room = await subscribe(alice, 'presence-ops');
    await subscribe(bob, 'presence-ops');
    const { data } = await room.log.waitFor('pusher:member_added');
    assert.deepEqual(data, { id: 'bob', info: null });
    assert.deepEqual(room.members.me, { id: 'alice', info: { name: 'Alice' } });
  });

  it('presence channel_data naming someone else than the token subject is refused', async () => {
    const client = relay.pusher({
      channelAuthorization: {
        customHandler: (_params, callback) => callback(null, { auth: jwt(viewer({ sub: 'alice' })), channel_data: JSON.stringify({ user_id: 'mallory' }) }),
      },
    });
    await assert.rejects(subscribed(client.subscribe('presence-ops')), (e) => /does not match/.test(e.data.error));
  });

  it('a viewer token publishes nothing', async () => {
    const { client } = tokenClient(() => jwt(viewer()));
    const ch = await subscribe(client, 'private-sonde-host.web3');
    const errors = [];
    client.connection.bind('error', (e) => errors.push(e));
    ch.trigger('client-sonde-sample', { forged: true });
    await waitUntil(() => errors.some((e) => e.data?.code === 4301 && /does not allow publishing/.test(e.data.message)), { what: 'a 4301 error' });
  });

  it('a token that expires mid-connection: the relay closes with 4102 and pusher-js recovers with a fresh token', async () => {
    const { client, calls } = tokenClient(() => jwt(viewer({ exp: now() + 2 })));
    const ch = await subscribe(client, 'private-sonde-host.web4');
    const firstSocket = client.connection.socket_id;
    await waitUntil(() => calls.length >= 2 && ch.subscribed && client.connection.socket_id !== firstSocket, {
      timeout: 8000,
      what: `a reconnect with a fresh token (authorizer calls: ${calls.length})`,
    });
    await connected(client);
    await relay.server().trigger('private-sonde-host.web4', 'after', { ok: true });
    const { data } = await ch.log.waitFor('after');
    assert.deepEqual(data, { ok: true });
    assert.ok(client.states.events().filter((s) => s === 'connected').length >= 2, client.states.events().join(' → '));
  }, { timeout: 20000 });
});
