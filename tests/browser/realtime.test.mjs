// Realtime: the button starts a session, the panel draws the agent's backfill at once and
// then gains a point each second; custom StatsD metrics get their own charts; Stop ends the
// session on the relay within its grace period.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { TestAgent, TestRelay, assertDashboardServed, freePort, launchBrowser, openDashboard, panelInfo, resources, screenshot, sleep, until } from './lib/harness.mjs';

const r = resources();
let relay;
let browser;
let statsd;

before(async () => {
  relay = r.add(await TestRelay.spawn());
  await assertDashboardServed(relay);
  const statsdPort = await freePort();
  r.add(await TestAgent.spawn(relay, 'alpha', { statsd: `127.0.0.1:${statsdPort}` }));
  r.add(await TestAgent.spawn(relay, 'beta'));
  // An application sending StatsD to the agent: a counter, a timer and a gauge.
  const socket = dgram.createSocket('udp4');
  let n = 0;
  const timer = setInterval(() => {
    n++;
    const lines = ['checkout:1|c', `checkout.latency:${20 + (n % 15)}|ms`, `queue.depth:${n % 40}|g`].join('\n');
    socket.send(lines, statsdPort, '127.0.0.1');
  }, 200);
  statsd = { stop: async () => { clearInterval(timer); socket.close(); } };
  r.add(statsd);
  browser = r.add(await launchBrowser());
  await openDashboard(browser.page, await relay.dashboardUrl(relay.token('viewer')));
  // Let the agents' rings hold a few seconds of history to backfill.
  await sleep(5000);
});

after(() => r.cleanup());

test('Realtime draws the backfill, then a point each second', { timeout: 40_000 }, async () => {
  const { page } = browser;
  await page.locator('li.host[data-host="alpha"] button').click();
  const panel = page.locator('article.panel[data-host="alpha"]');
  await panel.waitFor();

  // The backfill lands before the first live sample: several seconds at once.
  const first = await until('the panel to go live', async () => {
    const p = await panelInfo(page, 'alpha');
    return p?.state === 'live' && p;
  });
  assert.ok(first.points >= 5, `backfill drew ${first.points} points`);
  assert.ok(first.cpu >= 5, `CPU chart holds ${first.cpu} points`);
  assert.deepEqual(first.charts.slice(0, 3), ['cpu', 'load', 'mem']);

  // Live samples keep coming, one per second.
  const later = await until('three more points', async () => {
    const p = await panelInfo(page, 'alpha');
    return p.points >= first.points + 3 && p;
  }, { timeout: 10_000 });
  assert.equal(later.state, 'live');
  assert.ok(later.cpu > first.cpu, 'the chart itself grew');
  // The DOM says the same (it may trail the store by the sample of the next frame).
  assert.ok(Number(await panel.getAttribute('data-points')) >= first.points + 3);

  // The relay runs one session for alpha, with this page as its viewer.
  const sessions = await relay.sessions();
  const s = sessions.find((x) => x.host === 'alpha');
  assert.ok(s, `a session for alpha: ${JSON.stringify(sessions)}`);
  assert.equal(s.viewers, 1);

  // Header, stats and top processes read as an operator expects.
  assert.equal(await panel.locator('.session-state').innerText(), 'Live');
  assert.match(await panel.locator('.panel-meta').innerText(), /lease \d+s · \d+ points/);
  assert.match(await panel.locator('[data-stat="cpu"] .stat-value').innerText(), /^\d+(\.\d)?%$/);
  assert.match(await panel.locator('[data-stat="mem"] .stat-sub').innerText(), /(KiB|MiB|GiB) of .*(MiB|GiB)/);
  assert.match(await panel.locator('[data-stat="net"] .stat-value').innerText(), /B\/s$/);
  await until('the top-processes table', async () => (await panel.locator('.top tbody tr:not([hidden])').count()) > 0);
  await screenshot(page, '04-realtime-live');
});

test('custom app.* metrics each get a chart', { timeout: 20_000 }, async () => {
  const { page } = browser;
  const charts = await until('custom charts', async () => {
    const p = await panelInfo(page, 'alpha');
    return p.charts.includes('app:app.checkout.count_ps') && p.charts;
  });
  assert.ok(charts.includes('app:app.queue.depth'), charts.join(', '));
  assert.ok(charts.includes('app:app.checkout.latency (latency)'), charts.join(', '));
  const title = page.locator('article.panel[data-host="alpha"] figure[data-chart="app:app.checkout.count_ps"] figcaption');
  assert.match(await title.innerText(), /app\.checkout\.count_ps/i);
});

test('two hosts side by side', { timeout: 30_000 }, async () => {
  const { page } = browser;
  await page.locator('li.host[data-host="beta"] button').click();
  await until('beta live', async () => (await panelInfo(page, 'beta'))?.state === 'live');
  const [a, b] = await Promise.all(['alpha', 'beta'].map((h) => page.locator(`article.panel[data-host="${h}"]`).boundingBox()));
  assert.ok(b.x > a.x + a.width - 1, 'beta is beside alpha');
  assert.equal(await page.locator('li.host[data-host="alpha"] button').innerText(), 'Watching');
  await page.locator('.panels').evaluate((el) => (el.scrollTop = 0));
  await screenshot(page, '05-realtime-two-hosts');
});

test('Stop (by keyboard) ends the session on the relay within the grace', { timeout: 30_000 }, async () => {
  const { page } = browser;
  const panel = page.locator('article.panel[data-host="alpha"]');
  const stop = panel.getByRole('button', { name: 'Stop watching alpha' });
  await stop.focus();
  await page.keyboard.press('Space');
  await until('the panel to show Stopped', async () => (await panelInfo(page, 'alpha')).state === 'ended');
  const kept = (await panelInfo(page, 'alpha')).points;
  assert.ok(kept > 5, 'the points stay on screen');
  // Grace is 1 s in the test config; the controller ticks every 250 ms.
  const started = Date.now();
  await until('the relay to end the session', async () => !(await relay.sessions()).some((s) => s.host === 'alpha'), { timeout: 5_000 });
  assert.ok(Date.now() - started < 5_000);
  assert.ok((await relay.sessions()).some((s) => s.host === 'beta'), 'beta is still watched');
  await sleep(1500);
  assert.equal((await panelInfo(page, 'alpha')).points, kept, 'no more points after Stop');
  assert.equal(await panel.locator('.session-state').innerText(), 'Stopped');
  await screenshot(page, '06-stopped');

  // Resume with Enter: a new session, new points.
  await panel.getByRole('button', { name: 'Resume watching alpha' }).focus();
  await page.keyboard.press('Enter');
  await until('alpha live again', async () => (await panelInfo(page, 'alpha')).state === 'live');
  await until('new points', async () => (await panelInfo(page, 'alpha')).points > kept + 1);
});

test('a session the relay stops shows as stopped, and Restart starts another', { timeout: 30_000 }, async () => {
  const { page } = browser;
  await until('beta live', async () => (await panelInfo(page, 'beta')).state === 'live');
  await relay.api('/sessions/beta', 'DELETE');
  const panel = page.locator('article.panel[data-host="beta"]');
  await until('beta to show the stop', async () => (await panelInfo(page, 'beta')).state === 'stopped');
  assert.equal(await panel.locator('.session-state').innerText(), 'Session stopped');
  await panel.getByRole('button', { name: 'Restart watching beta' }).click();
  await until('beta live again', async () => (await panelInfo(page, 'beta')).state === 'live');
  assert.ok((await relay.sessions()).some((s) => s.host === 'beta'));
});
