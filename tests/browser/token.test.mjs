// Refused credentials get a clear message and a way to enter new ones; without credentials
// the page asks for them.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { APP, TestAgent, TestRelay, assertDashboardServed, launchBrowser, openDashboard, resources, screenshot, until } from './lib/harness.mjs';

const r = resources();
let relay;

before(async () => {
  relay = r.add(await TestRelay.spawn());
  await assertDashboardServed(relay);
  r.add(await TestAgent.spawn(relay, 'delta'));
});

after(() => r.cleanup());

test('a token signed with another secret is refused with a clear message', { timeout: 30_000 }, async (t) => {
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  await openDashboard(page, await relay.dashboardUrl(relay.token('viewer', { secret: 'not-the-secret' })));
  const notice = page.locator('.notice[role="alert"]');
  await notice.waitFor({ timeout: 10_000 });
  const text = await notice.innerText();
  assert.match(text, /refused this token/);
  assert.match(text, /signature|token/i);
  assert.equal(await page.locator('li.host').count(), 0, 'no hosts without a valid token');
  await screenshot(page, '09-token-refused');

  // The way out: enter another token.
  await notice.getByRole('button', { name: 'Enter another token' }).click();
  await page.locator('form.login').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sonde.credentials')), null, 'the bad token is forgotten');
});

test('without credentials the page asks for them, and a pasted token connects', { timeout: 30_000 }, async (t) => {
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  const url = (await relay.dashboardUrl('x')).replace(/#.*/, '');
  const ws = (await relay.dashboardUrl('x')).match(/&ws=[^&]+/)?.[0] ?? '';
  await openDashboard(page, ws ? `${url}#${ws.slice(1)}` : url);
  await page.locator('form.login').waitFor({ timeout: 10_000 });
  // Keyboard only: the key field has focus.
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-key');
  await page.keyboard.type(APP.key);
  await page.keyboard.press('Tab');
  await page.keyboard.type(relay.token('viewer'));
  await screenshot(page, '10-login');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.locator('li.host[data-host="delta"]').waitFor({ timeout: 10_000 });
  await until('connected', async () => (await page.locator('.conn').getAttribute('data-state')) === 'connected');
});

test('an unknown app key is refused with its close code', { timeout: 30_000 }, async (t) => {
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  await openDashboard(page, await relay.dashboardUrl(relay.token('viewer'), 'no-such-key'));
  const notice = page.locator('.notice[role="alert"]');
  await notice.waitFor({ timeout: 15_000 });
  assert.match(await notice.innerText(), /4001/);
  assert.notEqual(await page.locator('.conn').getAttribute('data-state'), 'connected');
});

test('an expired token is recognised before connecting', { timeout: 30_000 }, async (t) => {
  const token = relay.token('viewer', { ttl: '1s' });
  await new Promise((r) => setTimeout(r, 2100));
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  await openDashboard(page, await relay.dashboardUrl(token));
  await page.locator('form.login').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('form.login .notice').innerText(), /expired/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-token', 'focus is on the token to replace');
});
