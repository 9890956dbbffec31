// Webhooks to https backends: a receiver whose certificate comes from a private CA named in
// `[webhooks] ca_file` gets signed requests (checked with the official SDK's `webhook()`); a
// receiver whose certificate no trusted CA issued gets none: the relay's attempts fail the TLS
// handshake, are counted as `outcome="tls"`, retried, and dropped after the retry window.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { Relay, app, it, subscribe, uniq, waitUntil } from '../lib/index.js';
import { TestCa } from '../lib/tls.js';
import { Receiver, allValid, metric, metricReaching, target } from '../lib/webhooks.js';

let relay;
let trustedCa;
let strangerCa;
let trusted;
let untrusted;
let TRUSTED;
let UNTRUSTED;

before(async () => {
  trustedCa = new TestCa('Sonde backend CA');
  strangerCa = new TestCa('Nobody trusts this CA');
  const [a, b] = [app(7301), app(7302)];
  trusted = await Receiver.start({ apps: [a], tls: trustedCa.issue() });
  untrusted = await Receiver.start({ apps: [b], tls: strangerCa.issue() });
  TRUSTED = { ...a, webhooks: [target(trusted, ['channel_occupied', 'channel_vacated'])] };
  UNTRUSTED = { ...b, webhooks: [target(untrusted, ['channel_occupied', 'channel_vacated'])] };
  const settings = `[webhooks]
ca_file = ${JSON.stringify(trustedCa.caFile)}
timeout_ms = 1000
initial_backoff_ms = 100
max_backoff_ms = 400
retry_window_s = 2
`;
  relay = await Relay.start({ apps: [TRUSTED, UNTRUSTED], extraToml: settings });
}, { timeout: 30000 });

after(async () => {
  await relay?.stop();
  await trusted?.stop();
  await untrusted?.stop();
  trustedCa?.remove();
  strangerCa?.remove();
});

describe('https webhook targets', () => {
  it('a backend with a certificate of the configured CA receives signed events over https', async () => {
    assert.match(trusted.url, /^https:\/\//);
    const name = uniq('secure');
    const client = relay.pusher({ app: TRUSTED.id });
    await subscribe(client, name);
    const occupied = await trusted.waitForEvent((e) => e.channel === name && e.name === 'channel_occupied');
    assert.equal(occupied.request.headers['x-pusher-key'], TRUSTED.key);
    client.unsubscribe(name);
    await trusted.waitForEvent((e) => e.channel === name && e.name === 'channel_vacated');
    allValid(trusted);
    assert.equal(trusted.tlsErrors, 0);
    const labels = { app: TRUSTED.id, target: `127.0.0.1:${trusted.port}` };
    assert.equal(await metricReaching(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'ok' }, 2), 2);
    assert.equal(await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'tls' }), 0);
  });

  it('a backend whose certificate no trusted CA issued gets nothing: TLS failures retried, then dropped', async () => {
    const name = uniq('stranger');
    const client = relay.pusher({ app: UNTRUSTED.id });
    await subscribe(client, name);
    const labels = { app: UNTRUSTED.id, target: `127.0.0.1:${untrusted.port}` };
    await waitUntil(async () => (await metric(relay, 'sonde_webhook_dropped_events_total', { ...labels, reason: 'retry_window' })) >= 1, {
      timeout: 10000,
      what: 'the event given up after the 2 s retry window',
    });
    const failures = await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'tls' });
    assert.ok(failures >= 3, `${failures} attempts refused at the handshake`);
    assert.ok((await metric(relay, 'sonde_webhook_retries_total', labels)) >= 2);
    assert.equal(await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'ok' }), 0);
    assert.equal(await metric(relay, 'sonde_webhook_delivered_events_total', labels), 0);
    assert.equal(untrusted.requests.length, 0, 'no request got past the handshake');
    // The receiver sees a handshake fail when the relay's alert reaches it, a moment after the
    // relay counted it.
    await waitUntil(() => untrusted.tlsErrors >= 3, { what: `the receiver to see 3 handshakes fail (saw ${untrusted.tlsErrors})` });
  }, { timeout: 20000 });
});
