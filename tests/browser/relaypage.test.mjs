// The relay page: with an operator token the dashboard draws the relay's own state (published
// once a second while the page watches) with a host's charts, one column per node, and the
// flight recorder's latest entries as a table.

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { APP, TestRelay, assertDashboardServed, freePort, launchBrowser, openDashboard, resources, screenshot, until } from './lib/harness.mjs';

// Every fan-out pass counts as slow, so the recorder has entries to show.
const CONFIG = `[recorder]
slow_publish_ms = 0

[[apps]]
id = "${APP.id}"
key = "${APP.key}"
secret = "${APP.secret}"
`;

const r = resources();
let relay;
let browser;

before(async () => {
  relay = new TestRelay(await freePort(), mkdtempSync(path.join(os.tmpdir(), 'sonde-browser-relaypage-')));
  writeFileSync(relay.configFile, CONFIG);
  await relay.start();
  r.add(relay);
  await assertDashboardServed(relay);
  browser = r.add(await launchBrowser());
});

after(() => r.cleanup());

function relayInfo(page) {
  return page.evaluate(() => window.__sondeRelay?.info() ?? null);
}

test('an operator sees the relay live, with its slow events', { timeout: 40_000 }, async () => {
  const { page } = browser;
  await openDashboard(page, await relay.dashboardUrl(relay.token('operator')));
  const column = page.locator('.relay-page .relay-node[data-node="local"]');
  await column.waitFor();
  assert.equal(await column.locator('figure.chart').count(), 4, 'connections, messages, latency, sessions');

  const first = await until('three states from the relay', async () => {
    const info = await relayInfo(page);
    return info?.local?.points >= 3 && info.local;
  });
  assert.ok(first.latest.connections >= 1, JSON.stringify(first.latest));

  // Five more websockets: the next states count them.
  await page.evaluate(({ port, key }) => {
    window.__extra = Array.from({ length: 5 }, () => new WebSocket(`ws://127.0.0.1:${port}/app/${key}?protocol=7&client=js&version=8`));
  }, { port: relay.port, key: APP.key });
  const moved = await until('the connections to move', async () => {
    const info = await relayInfo(page);
    return info.local.latest.connections >= first.latest.connections + 5 && info.local;
  }, { timeout: 10_000 });
  assert.ok(moved.points > first.points, 'new points were drawn');

  // Today's usage: the busiest second's connections, and the relay's own states as messages
  // published and delivered to this page.
  const today = await until("today's totals to count them", async () => {
    const t = await page.evaluate(() => window.__sondeRelay?.todayShown());
    return t?.peak_connections >= moved.latest.connections && t.messages_out >= 3 && t;
  }, { timeout: 10_000 });
  assert.ok(today.deliveries >= today.messages_out, JSON.stringify(today));
  assert.ok(today.messages_in >= 1, 'the subscribe of the page was received');
  await until('the figure on the page', async () => {
    const shown = await page.locator('.relay-today dd[data-figure="peak_connections"]').innerText();
    const t = await page.evaluate(() => window.__sondeRelay.todayShown());
    return shown === String(t.peak_connections);
  });

  // The recorder's table shows the relay's own publishes (every one is "slow" here).
  await until('the recorder table', async () => (await page.locator('.relay-slow-table tbody tr[data-kind="slow_publish"]').count()) > 0, { timeout: 10_000 });
  assert.match(await page.locator('.relay-slow-table tbody tr').first().innerText(), /private-sonde-relay/);
  await screenshot(page, '09-relay-page');
  await page.evaluate(() => window.__extra.forEach((w) => w.close()));
});

test('a viewer token shows no relay page and the relay publishes nothing for it', { timeout: 20_000 }, async () => {
  // A fresh page: the operator's closes, and with it the relay page's subscription.
  await browser.page.close();
  const page = await browser.context.newPage();
  await openDashboard(page, await relay.dashboardUrl(relay.token('viewer')));
  await until('the dashboard to connect', async () => (await page.evaluate(() => window.__sonde?.connection())) === 'connected');
  assert.equal(await page.locator('.relay-page').count(), 0);
  const published = async () => Number((await (await fetch(`${relay.origin}/metrics`)).text()).match(/^sonde_relay_states_published_total (\d+)/m)?.[1]);
  const before = await published();
  assert.ok(before >= 3, `the operator's page was sent states (${before})`);
  await new Promise((res) => setTimeout(res, 2500));
  assert.equal(await published(), before, 'nobody watches the relay: nothing published');
});
