// A relay restart: the page notices, pusher-js reconnects and re-subscribes on its own, the
// relay starts a new session, and the panel keeps its old points and gains new ones.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestAgent, TestRelay, assertDashboardServed, launchBrowser, openDashboard, panelInfo, resources, screenshot, sleep, until } from './lib/harness.mjs';

const r = resources();
let relay;
let browser;

before(async () => {
  relay = r.add(await TestRelay.spawn());
  await assertDashboardServed(relay);
  r.add(await TestAgent.spawn(relay, 'gamma'));
  browser = r.add(await launchBrowser());
  await openDashboard(browser.page, await relay.dashboardUrl(relay.token('viewer')));
  await sleep(3000);
});

after(() => r.cleanup());

const connection = (page) => page.evaluate(() => window.__sonde.connection());

test('killing the relay and starting it again on the same port recovers by itself', { timeout: 90_000 }, async () => {
  const { page } = browser;
  await page.locator('li.host[data-host="gamma"] button').click();
  await until('gamma live', async () => (await panelInfo(page, 'gamma'))?.state === 'live');
  await until('a few live points', async () => (await panelInfo(page, 'gamma')).points >= 6);
  const before = (await panelInfo(page, 'gamma')).points;

  await relay.kill();
  await until('the page to notice', async () => (await connection(page)) !== 'connected');
  await until('the panel to show reconnecting', async () => (await panelInfo(page, 'gamma')).state === 'reconnecting');
  assert.match(await page.locator('.conn-text').innerText(), /Reconnecting|Connecting/);
  assert.equal(await page.locator('article.panel[data-host="gamma"] .session-state').innerText(), 'Reconnecting…');
  await screenshot(page, '07-relay-down');
  const during = (await panelInfo(page, 'gamma')).points;
  assert.ok(during >= before, 'points are kept while the relay is away');

  await sleep(2000);
  await relay.start();
  await until('the connection to come back', async () => (await connection(page)) === 'connected', { timeout: 40_000 });
  assert.equal(await page.locator('.conn-text').innerText(), 'Connected');
  await until('gamma live again', async () => (await panelInfo(page, 'gamma')).state === 'live', { timeout: 40_000 });
  const resumed = await until('new points after the restart', async () => {
    const p = await panelInfo(page, 'gamma');
    return p.points >= during + 3 && p;
  }, { timeout: 15_000 });
  assert.ok(resumed.points > before);
  // The new session's backfill fills the seconds the relay was away.
  const gaps = await page.evaluate(() => {
    const s = window.__sonde.panels.gamma.store.samples;
    let missing = 0;
    for (let i = 1; i < s.length; i++) missing += Math.max(0, (s[i].ts - s[i - 1].ts) / 1000 - 1);
    return missing;
  });
  assert.ok(gaps <= 1, `${gaps} seconds missing after the backfill`);
  assert.ok((await relay.sessions()).some((s) => s.host === 'gamma'), 'a new session on the new relay');
  await screenshot(page, '08-recovered');
});
