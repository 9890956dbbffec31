// A link may name another relay (`ws=host:port`). The viewer token goes there only after the
// user confirms it in the page: before the answer no websocket opens anywhere, Cancel keeps the
// page on the relay that served it, Connect uses the named relay and remembers it for the tab.
// The page always comes from relay A here (it is the origin under test), whatever
// SONDE_WEB_DIST says.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { APP, TestAgent, TestRelay, assertDashboardServed, countingListener, launchBrowser, resources, screenshot, sleep, until } from './lib/harness.mjs';

const r = resources();
let own;
let other;

before(async () => {
  own = r.add(await TestRelay.spawn());
  other = r.add(await TestRelay.spawn());
  await assertDashboardServed(own);
  r.add(await TestAgent.spawn(own, 'own-host'));
  r.add(await TestAgent.spawn(other, 'other-host'));
});

after(() => r.cleanup());

/** A browser whose pages' websocket URLs are recorded (Chromium reports each one it opens). */
async function watchedBrowser(t) {
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const sockets = [];
  browser.context.on('page', (p) => p.on('websocket', (ws) => sockets.push(ws.url())));
  browser.page.on('websocket', (ws) => sockets.push(ws.url()));
  return { ...browser, sockets };
}

function link(fragment) {
  return `${own.origin}/#${new URLSearchParams(fragment).toString()}`;
}

const connState = (page) => page.locator('.conn').getAttribute('data-state');
const storedRelay = (page) => page.evaluate(() => sessionStorage.getItem('sonde.relay'));

test('a link naming another relay asks first, connects nowhere before the answer, and Cancel stays here', { timeout: 60_000 }, async (t) => {
  const listener = await countingListener();
  t.after(() => listener.close());
  const elsewhere = `127.0.0.1:${listener.port}`;
  const { page, context, sockets } = await watchedBrowser(t);
  await page.goto(link({ key: APP.key, token: own.token('viewer'), ws: elsewhere }));

  const dialog = page.getByRole('alertdialog');
  await dialog.waitFor({ timeout: 10_000 });
  const text = await dialog.innerText();
  assert.ok(text.includes(elsewhere), 'the other host is named');
  assert.match(text, new RegExp(`viewer token would be sent to ${elsewhere.replace(/\./g, '\\.')}`));
  const confirm = dialog.getByRole('button', { name: `Connect to ${elsewhere}` });
  const cancel = dialog.getByRole('button', { name: 'Cancel' });
  assert.ok(await confirm.isVisible());
  assert.equal(await cancel.evaluate((b) => b === document.activeElement), true, 'the safe answer has focus');
  assert.equal(new URL(page.url()).hash, '', 'the token left the address bar while the question is open');
  await screenshot(page, '11-relay-confirm');

  // Nothing may happen while the question is open: give a page that would connect time to.
  await sleep(1500);
  assert.equal(listener.connections, 0, 'no connection to the other host before the answer');
  assert.deepEqual(sockets, [], 'no websocket at all before the answer');
  assert.equal(await storedRelay(page), null);

  await cancel.click();
  await page.locator('li.host[data-host="own-host"]').waitFor({ timeout: 10_000 });
  await until('connected to this relay', async () => (await connState(page)) === 'connected');
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(`ws://127.0.0.1:${own.port}/app/`)), `only this relay: ${sockets}`);
  assert.equal(listener.connections, 0, 'Cancel sends nothing to the other host');
  assert.equal(await storedRelay(page), null, 'Cancel remembers nothing');
  assert.equal(await page.locator('.relay-host').count(), 0, 'the top bar names no other relay');

  // The same link confirmed in another tab does reach the listener: the count above is real.
  const tab = await context.newPage();
  await tab.goto(link({ key: APP.key, token: own.token('viewer'), ws: elsewhere }));
  await tab.getByRole('button', { name: `Connect to ${elsewhere}` }).click();
  await until('the confirmed connection at the listener', () => listener.connections > 0);
});

test('without credentials, Cancel keeps the login for this relay; Connect names the other one', { timeout: 30_000 }, async (t) => {
  const listener = await countingListener();
  t.after(() => listener.close());
  const elsewhere = `127.0.0.1:${listener.port}`;
  const { page, sockets } = await watchedBrowser(t);

  await page.goto(link({ ws: elsewhere }));
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.locator('form.login').waitFor();
  assert.equal(await page.locator('#login-title').innerText(), 'Connect to this relay');

  // A new document (a fragment change alone does not reload the page).
  await page.goto('about:blank');
  await page.goto(link({ ws: elsewhere }));
  await page.getByRole('button', { name: `Connect to ${elsewhere}` }).click();
  await page.locator('form.login').waitFor();
  assert.equal(await page.locator('#login-title').innerText(), `Connect to ${elsewhere}`);
  assert.match(await page.locator('form.login').innerText(), new RegExp(`sent only to ${elsewhere.replace(/\./g, '\\.')}`));
  assert.equal(await storedRelay(page), elsewhere);

  // The way back without a new link.
  await page.getByRole('button', { name: "Use this page's relay instead" }).click();
  assert.equal(await page.locator('#login-title').innerText(), 'Connect to this relay');
  assert.equal(await storedRelay(page), null);
  assert.equal(listener.connections, 0, 'no token, no connection');
  assert.deepEqual(sockets, []);
});

test('Connect uses the confirmed relay, remembered for this tab only', { timeout: 60_000 }, async (t) => {
  const elsewhere = `127.0.0.1:${other.port}`;
  const { page, context, sockets } = await watchedBrowser(t);
  await page.goto(link({ key: APP.key, token: other.token('viewer'), ws: elsewhere }));
  await page.getByRole('button', { name: `Connect to ${elsewhere}` }).click();

  await page.locator('li.host[data-host="other-host"]').waitFor({ timeout: 10_000 });
  await until('connected to the other relay', async () => (await connState(page)) === 'connected');
  assert.equal(await page.locator('li.host[data-host="own-host"]').count(), 0, 'the host list is the other relay’s');
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(`ws://${elsewhere}/app/`)), `only the confirmed relay: ${sockets}`);
  assert.equal(await page.locator('.relay-host').innerText(), elsewhere, 'the top bar names the relay in use');
  await screenshot(page, '12-other-relay');

  // A reload keeps the choice without asking again.
  sockets.length = 0;
  await page.reload();
  await page.locator('li.host[data-host="other-host"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.getByRole('alertdialog').count(), 0);
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(`ws://${elsewhere}/app/`)));

  // Another tab knows nothing of it.
  const tab = await context.newPage();
  await tab.goto(`${own.origin}/`);
  await tab.locator('form.login').waitFor({ timeout: 10_000 });
  assert.equal(await tab.locator('#login-title').innerText(), 'Connect to this relay');
});

test('a link naming this very relay needs no question; one naming no address is refused', { timeout: 30_000 }, async (t) => {
  const { page, sockets } = await watchedBrowser(t);
  await page.goto(link({ key: APP.key, token: own.token('viewer'), ws: `127.0.0.1:${own.port}` }));
  await page.locator('li.host[data-host="own-host"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.getByRole('alertdialog').count(), 0);

  sockets.length = 0;
  await page.goto('about:blank');
  await page.goto(link({ key: APP.key, token: own.token('viewer'), ws: 'ws://127.0.0.1:9/x' }));
  await page.locator('li.host[data-host="own-host"]').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('p.notice[role="status"]').innerText(), /not a host:port address/);
  assert.ok(sockets.every((u) => u.startsWith(`ws://127.0.0.1:${own.port}/app/`)), `only this relay: ${sockets}`);
});
