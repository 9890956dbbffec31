// The dashboard over https: the relay serves the page, the API and the websocket with a
// certificate of a CA made for this run; Chromium trusts that CA through its user's NSS
// database (no flag that skips verification), and the agent streams over wss:// with
// --ca-file. A browser without the CA refuses the page: the trust is real.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestAgent, TestRelay, assertDashboardServed, launchBrowser, openDashboard, panelInfo, resources, screenshot, until } from './lib/harness.mjs';

const r = resources();
let relay;

before(async () => {
  relay = r.add(await TestRelay.spawn({ tls: true }));
  await assertDashboardServed(relay);
  r.add(await TestAgent.spawn(relay, 'secure-01'));
});

after(() => r.cleanup());

test('the dashboard over https lists the agent and streams it live over wss', { timeout: 40_000 }, async () => {
  const browser = r.add(await launchBrowser({ trust: relay.ca.caFile }));
  const { page } = browser;
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const url = await relay.dashboardUrl(relay.token('viewer'));
  assert.match(url, /^https:\/\/127\.0\.0\.1:/);
  await openDashboard(page, url);
  await until('the connection', async () => (await page.locator('.conn').getAttribute('data-state')) === 'connected');
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith('wss://')), `websockets: ${sockets}`);
  const row = page.locator('li.host[data-host="secure-01"]');
  await row.waitFor({ timeout: 10_000 });
  await row.locator('button').click();
  const live = await until('the panel to go live', async () => {
    const p = await panelInfo(page, 'secure-01');
    return p?.state === 'live' && p.points > 0 && p;
  });
  await until('another point a second later', async () => (await panelInfo(page, 'secure-01')).points > live.points, { timeout: 10_000 });
  await screenshot(page, 'tls-01-live-over-https');
  assert.deepEqual(browser.errors, []);
});

test('a browser that does not trust the CA refuses the page', { timeout: 20_000 }, async () => {
  const browser = r.add(await launchBrowser());
  await assert.rejects(browser.page.goto(`${relay.origin}/`), /ERR_CERT_AUTHORITY_INVALID/);
});
