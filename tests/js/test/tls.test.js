// The core client cases over TLS: a relay serving wss:// and https:// with a certificate of
// a CA made for this file. pusher-js (forceTLS, wssPort) and Laravel Echo run in node
// processes of their own that trust the CA through NODE_EXTRA_CA_CERTS, as an application
// would; the official `pusher` SDK (useTLS) and raw `ws` sockets are given the CA explicitly.
// Without the CA, nothing connects: the trust is real.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import PusherServer from 'pusher';

import { app, it, uniq, useRelay } from '../lib/index.js';
import { ChildClient } from '../lib/child-client.js';

const relay = useRelay({ apps: [app(1201)], tls: true });

describe('clients over TLS', () => {
  it('pusher-js with forceTLS receives over wss:// what the SDK triggers over https://', async () => {
    assert.match(relay.wsBase, /^wss:/);
    const [pub, priv] = [uniq('tls-news'), uniq('private-tls')];
    const client = ChildClient.start(relay, { channels: [pub, priv], events: ['update'] });
    await client.subscribed(pub);
    await client.subscribed(priv);
    assert.ok(client.reports.some((r) => r.state === 'connected'));
    const sdk = relay.server();
    assert.equal(sdk.config.scheme, 'https');
    await sdk.trigger([pub, priv], 'update', { n: 1 });
    assert.deepEqual((await client.event(pub, 'update')).data, { n: 1 });
    assert.deepEqual((await client.event(priv, 'update')).data, { n: 1 });
  }, { timeout: 20000 });

  it('presence over wss://: the member pusher-js brings is listed by the SDK over https', async () => {
    const room = uniq('presence-tls');
    const client = ChildClient.start(relay, { channels: [room] });
    await client.subscribed(room);
    const users = await (await relay.server().get({ path: `/channels/${room}/users` })).json();
    assert.deepEqual(users.users.map((u) => u.id), [`child-${client.child.pid}`]);
  }, { timeout: 20000 });

  it('Laravel Echo over wss:// listens on public and private channels', async () => {
    const [pub, priv] = [uniq('tls-echo'), uniq('private-tls-echo')];
    const client = ChildClient.start(relay, { kind: 'echo', channels: [pub, priv], events: ['OrderShipped'] });
    await client.subscribed(pub);
    await client.subscribed(priv);
    await relay.server().triggerBatch([
      { channel: pub, name: 'OrderShipped', data: { id: 7 } },
      { channel: priv, name: 'OrderShipped', data: { id: 8 } },
    ]);
    assert.deepEqual((await client.event(pub, 'OrderShipped')).data, { id: 7 });
    assert.deepEqual((await client.event(priv, 'OrderShipped')).data, { id: 8 });
  }, { timeout: 20000 });

  it('the SDK over https: channel lists and info, and its signatures authorise wss:// sockets', async () => {
    const name = uniq('private-tls-api');
    const sock = await relay.connect();
    const joined = await sock.join(name);
    assert.equal(joined.event, 'pusher_internal:subscription_succeeded', 'the SDK-made auth is accepted');
    const sdk = relay.server();
    const list = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: 'private-tls-api' } })).json();
    assert.ok(name in list.channels, JSON.stringify(list));
    const info = await (await sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } })).json();
    assert.equal(info.occupied, true);
    assert.equal(info.subscription_count, 1);
    await sdk.trigger(name, 'ping', { over: 'https' });
    const frame = await sock.next({ event: 'ping', channel: name });
    assert.deepEqual(frame.data, { over: 'https' });
  });

  it('without the test CA nothing connects: pusher-js fails its handshakes, the SDK refuses the certificate', async () => {
    const failures = () => relay.get('/metrics').then(({ text }) => sumOf(text, 'sonde_tls_handshake_failures_total'));
    const before = await failures();
    const client = ChildClient.start(relay, { channels: [uniq('tls-never')], trust: false, options: { unavailableTimeout: 3000 } });
    await client.waitFor((r) => r.state === 'unavailable', 'pusher-js giving up', 8000);
    assert.ok(!client.reports.some((r) => r.state === 'connected' || r.subscribed), JSON.stringify(client.reports));
    assert.ok((await failures()) > before, 'the relay saw its handshakes fail');
    const a = relay.app();
    const untrusting = new PusherServer({ appId: a.id, key: a.key, secret: a.secret, host: '127.0.0.1', port: String(relay.port), useTLS: true, timeout: 5000 });
    await assert.rejects(untrusting.trigger('tls-never', 'ev', {}), (e) => /certificate/i.test(`${e.message} ${e.error?.message ?? ''} ${e.error?.code ?? ''}`));
  }, { timeout: 20000 });
});

/** The sum of a metric's series in a Prometheus text page. */
function sumOf(text, name) {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}
