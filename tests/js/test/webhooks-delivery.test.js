// Webhook delivery when the backend misbehaves: a receiver that fails, hangs, then recovers;
// a receiver that is down for longer than the retry window. Short timeouts and a short retry
// window so the test sees the whole policy.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';

import { Relay, app, it, sleep, subscribe, uniq, waitUntil } from '../lib/index.js';
import { Receiver, allValid, metric, metricReaching, target } from '../lib/webhooks.js';

const SETTINGS = `[webhooks]
timeout_ms = 500
initial_backoff_ms = 200
max_backoff_ms = 5000
retry_window_s = 4
max_queue_bytes = 65536
`;

let relay;
let flaky;
let down;
let FLAKY;
let DOWN;

before(async () => {
  const [a, b] = [app(7101, { client_events: true }), app(7102)];
  flaky = await Receiver.start({ apps: [a], script: [500, 500, 'hang', 200] });
  down = await Receiver.start({ apps: [b] });
  FLAKY = { ...a, webhooks: [target(flaky, ['channel_occupied', 'channel_vacated'])] };
  DOWN = { ...b, webhooks: [target(down, ['channel_occupied', 'channel_vacated'])] };
  relay = await Relay.start({ apps: [FLAKY, DOWN], extraToml: SETTINGS });
}, { timeout: 30000 });

after(async () => {
  await relay?.stop();
  await flaky?.stop();
  await down?.stop();
});

/** Resident memory of the relay process, bytes. */
function rss() {
  const status = readFileSync(`/proc/${relay.child.pid}/status`, 'utf8');
  return Number(status.match(/VmRSS:\s+(\d+) kB/)[1]) * 1024;
}

/** Occupies and vacates `n` fresh public channels from one socket (2n events). */
async function churn(sock, n) {
  for (let i = 0; i < n; i += 1) {
    const name = uniq('flood');
    sock.subscribe(name);
    sock.unsubscribe(name);
    if (i % 200 === 199) await sock.roundTrip();
  }
  await sock.roundTrip();
  sock.frames.length = 0;
  sock.unread.length = 0;
}

describe('webhook delivery through failures', () => {
  it('a receiver that answers 500, then hangs, then recovers: retried with growing delays, then delivered', async () => {
    const name = uniq('news');
    const client = relay.pusher({ app: FLAKY.id });
    await subscribe(client, name);
    await flaky.waitUntil(() => flaky.requests.length >= 4, { timeout: 10000, what: 'four attempts' });
    const attempts = flaky.requests.slice(0, 4);
    assert.deepEqual(attempts.map((r) => r.answered), [500, 500, 'hang', 200]);
    for (const r of attempts) assert.deepEqual(r.events.map((e) => [e.name, e.channel]), [['channel_occupied', name]], 'the same event, signed again each time');
    const gaps = attempts.slice(1).map((r, i) => r.at - attempts[i].at);
    // Retry n waits within [100 ms, 200 ms] × 2^(n-1); the hung attempt costs the 500 ms
    // timeout first.
    assert.ok(gaps[0] >= 100 && gaps[1] >= 200 && gaps[1] > gaps[0] * 0.9, `growing delays: ${gaps}`);
    assert.ok(gaps[2] >= 500 + 400, `a timeout then a longer delay: ${gaps}`);
    allValid(flaky);
    client.unsubscribe(name);
    await flaky.waitForEvent((e) => e.channel === name && e.name === 'channel_vacated');
    const labels = { app: FLAKY.id, target: `127.0.0.1:${flaky.port}` };
    assert.equal(await metric(relay, 'sonde_webhook_retries_total', labels), 3);
    assert.equal(await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'http_5xx' }), 2);
    assert.equal(await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'timeout' }), 1);
    assert.equal(await metricReaching(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'ok' }, 2), 2);
    assert.equal(await metricReaching(relay, 'sonde_webhook_delivered_events_total', labels, 2), 2);
    assert.equal(await metricReaching(relay, 'sonde_webhook_delivery_seconds_count', labels, 2), 2);
    assert.ok(await metric(relay, 'sonde_webhook_delivery_seconds_sum', labels) >= 1.0, 'the first event waited through its retries');
  }, { timeout: 20000 });

  it('a receiver down past the retry window: events dropped and counted, memory flat, delivery resumes', async () => {
    await down.stop();
    const labels = { app: DOWN.id, target: `127.0.0.1:${down.port}` };
    const sock = await relay.connect({ app: DOWN.id });
    await churn(sock, 2000);
    await sleep(500);
    const before = rss();
    for (let round = 0; round < 5; round += 1) await churn(sock, 2000);
    const queueFull = await metric(relay, 'sonde_webhook_dropped_events_total', { ...labels, reason: 'queue_full' });
    assert.ok(queueFull > 20000, `${queueFull} events dropped for a full queue (24,000 produced, 64 KiB queued at most)`);
    const queued = await metric(relay, 'sonde_webhook_queue_events', labels);
    assert.ok(queued > 0 && queued < 65536 / 96, `${queued} events queued: within the 64 KiB bound`);
    const grown = rss() - before;
    assert.ok(grown < 8 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB while 20,000 more events were refused`);
    await waitUntil(async () => (await metric(relay, 'sonde_webhook_dropped_events_total', { ...labels, reason: 'retry_window' })) > 0, {
      timeout: 10000,
      what: 'the batch in flight given up after the 4 s window',
    });
    assert.ok((await metric(relay, 'sonde_webhook_requests_total', { ...labels, outcome: 'connect' })) >= 2, 'it kept trying');

    await down.restart();
    const name = uniq('back');
    await sock.join(name);
    await down.waitForEvent((e) => e.channel === name && e.name === 'channel_occupied', { timeout: 15000 });
    allValid(down);
    await waitUntil(async () => (await metric(relay, 'sonde_webhook_queue_events', labels)) === 0, { timeout: 15000, what: 'the queue drained' });
    sock.close();
  }, { timeout: 90000 });
});
