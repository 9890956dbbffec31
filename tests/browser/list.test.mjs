// The host list: a real agent shows up online with its minute summary; the token leaves the
// address bar; ten thousand hosts keep the DOM small.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestAgent, TestRelay, assertDashboardServed, launchBrowser, openDashboard, resources, screenshot, until } from './lib/harness.mjs';

const r = resources();
let relay;
let browser;

before(async () => {
  relay = r.add(await TestRelay.spawn());
  await assertDashboardServed(relay);
  r.add(await TestAgent.spawn(relay, 'web-01'));
  browser = r.add(await launchBrowser());
  await openDashboard(browser.page, await relay.dashboardUrl(relay.token('viewer')));
});

after(() => r.cleanup());

test('a connected agent is listed online with its summary', { timeout: 30_000 }, async () => {
  const { page } = browser;
  await until('the connection', async () => (await page.locator('.conn').getAttribute('data-state')) === 'connected');
  const row = page.locator('li.host[data-host="web-01"]');
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.evaluate((li) => li.classList.contains('offline')), false, 'listed as online');
  // The first snapshot comes right after the agent subscribes: facts and the minute summary.
  await until('the snapshot facts', async () => /\d+ cores/.test(await row.locator('.meta').innerText()));
  assert.match(await row.locator('.c-cpu .val').innerText(), /^\d+(\.\d)?%$/);
  assert.match(await row.locator('.c-mem .val').innerText(), /^\d+(\.\d)?%$/);
  assert.match(await row.locator('.c-seen').innerText(), /^up /);
  assert.match(await page.locator('.hosts-count').innerText(), /1 host · 1 online/);
  await screenshot(page, '01-host-list');
});

test('the token is taken out of the address bar and kept for the tab only', { timeout: 10_000 }, async () => {
  const { page } = browser;
  const url = new URL(page.url());
  assert.equal(url.hash, '', 'no fragment left');
  assert.ok(!page.url().includes('token'));
  const stored = await page.evaluate(() => sessionStorage.getItem('sonde.credentials'));
  assert.match(stored, /"token":"ey/);
});

test('the filter narrows the list and Enter opens the first match', { timeout: 20_000 }, async () => {
  const { page } = browser;
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'filter', '/ focuses the filter');
  await page.keyboard.type('nomatch');
  await until('the empty-filter message', () => page.locator('.hosts-empty').isVisible());
  assert.equal(await page.locator('li.host').count(), 0);
  await page.fill('.filter', 'web');
  await page.locator('li.host[data-host="web-01"]').waitFor();
  await page.keyboard.press('Enter');
  await page.locator('article.panel[data-host="web-01"]').waitFor({ timeout: 5_000 });
  await page.locator('article.panel[data-host="web-01"] button', { hasText: 'Close' }).click();
  await page.locator('article.panel').waitFor({ state: 'detached' });
  await page.fill('.filter', '');
});

test('an agent that goes away turns offline, and its open panel says so', { timeout: 40_000 }, async () => {
  const { page } = browser;
  const agent = await TestAgent.spawn(relay, 'web-02');
  r.add(agent);
  const row = page.locator('li.host[data-host="web-02"]');
  await row.waitFor({ timeout: 10_000 });
  await row.getByRole('button').click();
  await until('web-02 live', async () => (await page.evaluate(() => window.__sonde.panels['web-02']?.state)) === 'live');
  await agent.stop();
  await until('the row to turn offline', () => page.locator('li.host.offline[data-host="web-02"]').count());
  assert.match(await row.locator('.c-seen').innerText(), /^seen (just now|\d+s ago)$/);
  const panel = page.locator('article.panel[data-host="web-02"]');
  await until('the panel to say the host is offline', async () => /offline/.test(await panel.locator('.session-state').innerText()));
  await screenshot(page, '02-host-offline');
  await panel.getByRole('button', { name: 'Close web-02' }).click();
  await panel.waitFor({ state: 'detached' });
});

test('ten thousand hosts render only the rows in view', { timeout: 30_000 }, async () => {
  const { page } = browser;
  // Feed the page's inventory the way the relay does: full pages of 100, then one update.
  await page.evaluate(() => {
    const inv = window.__sonde.inventory;
    const now = Date.now();
    for (let p = 0; p < 100; p++) {
      const agents = [];
      for (let i = p * 100; i < (p + 1) * 100; i++) {
        const host = `node-${String(i).padStart(5, '0')}`;
        agents.push({
          host,
          online: i % 7 !== 0,
          last_seen: now - i * 1000,
          since: now - 3600_000,
          snapshot: {
            install_id: '0'.repeat(32),
            host,
            facts: { os: 'Debian GNU/Linux 12 (bookworm)', kernel: '6.1.0', cores: 8, mem_total_bytes: 17179869184, agent_version: '0.1.0' },
            summary: { cpu_pct: (i * 37) % 100, load1: (i % 50) / 10, mem_used_pct: (i * 13) % 100 },
            custom: {},
          },
        });
      }
      inv.apply({ full: true, agents });
    }
  });
  let count = '';
  await until('10,000 hosts counted', async () => /^100\d\d hosts/.test((count = await page.locator('.hosts-count').innerText()))).catch((e) => {
    throw new Error(`${e.message}: "${count}"`);
  });
  const rendered = await page.evaluate(() => window.__sonde.renderedRows());
  assert.ok(rendered > 5 && rendered < 80, `${rendered} rows in the DOM`);

  // Scroll to the end: the last host is there, the DOM is still small.
  await page.locator('.hosts-scroll').evaluate((el) => (el.scrollTop = el.scrollHeight));
  await page.locator('li.host[data-host="node-09999"]').waitFor({ timeout: 5_000 });
  assert.ok((await page.evaluate(() => window.__sonde.renderedRows())) < 80);

  // An update to one host rewrites that row only.
  await page.evaluate(() => {
    const a = window.__sonde.inventory.agents.get('node-09999');
    window.__sonde.inventory.apply({ full: false, agents: [{ ...a, online: false }] });
  });
  await until('the row to turn offline', () => page.locator('li.host[data-host="node-09999"].offline').count());

  // Sorting by CPU puts the busiest first.
  await page.locator('.hosts-scroll').evaluate((el) => (el.scrollTop = 0));
  await page.selectOption('.sort', 'cpu');
  await until('the busiest hosts first', async () => {
    const cpus = await page.locator('li.host').evaluateAll((lis) =>
      lis
        .map((li) => [Number(li.style.transform.match(/[\d.]+/)?.[0]), parseFloat(li.querySelector('.c-cpu .val').textContent)])
        .sort((a, b) => a[0] - b[0])
        .map(([, cpu]) => cpu),
    );
    return cpus[0] >= 99 && cpus.every((c, i) => i === 0 || c <= cpus[i - 1]);
  });
  await page.fill('.filter', 'node-0999');
  await until('the filtered count', async () => /10 shown/.test(await page.locator('.hosts-count').innerText()));
  await screenshot(page, '03-host-list-10k');
});
