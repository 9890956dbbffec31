// The host list with a generated fleet of 10,000 agents connected to a real relay
// (`sonde-bench fleet`, which writes what sonde-agent writes): the dashboard receives the
// whole inventory through the relay (paged), lists every host, filters and sorts them, and
// its DOM stays small. Timings (first render, per keystroke, sort) and the page's JS heap are
// printed for BENCHMARKS.md, not asserted: a timed assertion on a shared machine is not a
// benchmark.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { APP, ROOT, TestRelay, launchBrowser, openDashboard, resources, until } from './lib/harness.mjs';

const AGENTS = Number(process.env.SONDE_FLEET_AGENTS || 10_000);
const r = resources();
let relay;
let browser;

function benchBin() {
  const release = path.join(ROOT, 'target/release/sonde-bench');
  if (existsSync(release)) return release;
  const debug = path.join(ROOT, 'target/debug/sonde-bench');
  if (!existsSync(debug)) {
    const b = spawnSync('cargo', ['build', '-p', 'sonde-bench'], { cwd: ROOT, stdio: 'inherit' });
    if (b.status !== 0) throw new Error('cargo build -p sonde-bench failed');
  }
  return debug;
}

/** The simulated fleet, connected until the test ends. */
function startFleet(port) {
  const args = ['--port', String(port), '--app-id', APP.id, '--key', APP.key, '--secret', APP.secret];
  args.push('fleet', '--agents', String(AGENTS), '--prefix', 'node-', '--dashboards', '0', '--steady', '0', '--linger', '3600', '--connect-rate', '1000');
  const child = spawn(benchBin(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (b) => (log = (log + b.toString()).slice(-4000)));
  return { child, log: () => log, stop: async () => child.kill('SIGKILL') };
}

/** Sets the filter as typing would and waits for the list to redraw: ms for that keystroke. */
async function keystroke(page, value) {
  return page.evaluate(async (v) => {
    const input = document.querySelector('.filter');
    const t0 = performance.now();
    input.value = v;
    input.dispatchEvent(new Event('input', { bubbles: true }));
    await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
    return performance.now() - t0;
  }, value);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

before(async () => {
  relay = r.add(await TestRelay.spawn());
  const fleet = startFleet(relay.port);
  r.add(fleet);
  await until(`${AGENTS} agents online`, async () => {
    if (fleet.child.exitCode !== null) throw new Error(`the fleet exited: ${fleet.log()}`);
    const { agents } = await relay.api('/agents');
    return agents.filter((a) => a.online && a.snapshot).length >= AGENTS;
  }, { timeout: 120_000, every: 1000 });
  browser = r.add(await launchBrowser());
});

after(() => r.cleanup());

test(`${AGENTS} agents through the relay: listed, filtered and sorted`, { timeout: 180_000 }, async () => {
  const { page } = browser;
  const t0 = Date.now();
  await openDashboard(page, await relay.dashboardUrl(relay.token('viewer')));
  let count = '';
  const listed = new RegExp(`^${AGENTS} hosts · ${AGENTS} online`);
  await until('every host listed online', async () => listed.test((count = await page.locator('.hosts-count').innerText())), { timeout: 60_000, every: 50 }).catch((e) => {
    throw new Error(`${e.message}: "${count}"`);
  });
  const firstRender = Date.now() - t0;
  const rendered = await page.evaluate(() => window.__sonde.renderedRows());
  assert.ok(rendered > 5 && rendered < 80, `${rendered} rows in the DOM`);
  assert.equal(await page.evaluate(() => window.__sonde.hosts()), AGENTS);

  // Typing "node-123" one key at a time: the last keystroke leaves node-123 and node-1230…9.
  const typed = [];
  for (let round = 0; round < 3; round++) {
    for (const prefix of ['n', 'no', 'nod', 'node', 'node-', 'node-1', 'node-12', 'node-123']) typed.push(await keystroke(page, prefix));
    if (round < 2) await keystroke(page, '');
  }
  await until('the filtered count', async () => / · 11 shown$/.test(await page.locator('.hosts-count').innerText()));
  const names = await page.locator('li.host').evaluateAll((lis) => lis.map((li) => li.dataset.host).sort());
  assert.deepEqual(names, ['node-123', ...Array.from({ length: 10 }, (_, i) => `node-123${i}`)].sort());

  await keystroke(page, '');
  const sortStart = await page.evaluate(() => performance.now());
  await page.selectOption('.sort', 'cpu');
  await until('the busiest host first', async () => {
    const top = await page.locator('li.host').evaluateAll((lis) =>
      lis.map((li) => [Number(li.style.transform.match(/[\d.]+/)?.[0]), parseFloat(li.querySelector('.c-cpu .val').textContent)]).sort((a, b) => a[0] - b[0]),
    );
    return top.length > 0 && top.every(([, c], i) => i === 0 || c <= top[i - 1][1]);
  }, { every: 20 });
  const sortMs = (await page.evaluate(() => performance.now())) - sortStart;

  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('Performance.enable');
  const { metrics } = await cdp.send('Performance.getMetrics');
  const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? NaN;
  console.log(
    `fleet of ${AGENTS}: first render ${firstRender} ms; ${typed.length} keystrokes (two frames included): median ${median(typed).toFixed(1)} ms, max ${Math.max(...typed).toFixed(1)} ms; ` +
      `sort by CPU ${sortMs.toFixed(0)} ms (until checked); JS heap ${(heap / 1048576).toFixed(1)} MiB; ${rendered} rows in the DOM`,
  );
});
