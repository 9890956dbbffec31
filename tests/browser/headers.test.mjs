// The dashboard's own defences, as the relay serves it: a Content-Security-Policy that the page
// runs under without one violation (and that Chromium really enforces), and no framing by a
// page of another origin. These read the relay's `/` whatever SONDE_WEB_DIST says.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { APP, TestAgent, TestRelay, assertDashboardServed, launchBrowser, panelInfo, resources, servePages, until } from './lib/harness.mjs';

const r = resources();
let relay;

before(async () => {
  relay = r.add(await TestRelay.spawn());
  await assertDashboardServed(relay);
  r.add(await TestAgent.spawn(relay, 'epsilon'));
});

after(() => r.cleanup());

/** `a 'b'; c d` → { a: ["'b'"], c: ['d'] } */
function directives(policy) {
  const out = {};
  for (const part of policy.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) out[name.toLowerCase()] = values;
  }
  return out;
}

test('every dashboard response carries the policy, frame-ancestors and X-Frame-Options', { timeout: 20_000 }, async () => {
  let policy;
  for (const path of ['/', '/app.js', '/app.css']) {
    const res = await fetch(`${relay.origin}${path}`);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
    const csp = res.headers.get('content-security-policy');
    assert.ok(csp, `${path} has a Content-Security-Policy`);
    policy ??= csp;
    assert.equal(csp, policy, `${path} has the same policy as /`);
  }
  const d = directives(policy);
  assert.deepEqual(d['default-src'], ["'none'"]);
  assert.deepEqual(d['script-src'], ["'self'"]);
  assert.deepEqual(d['style-src'], ["'self'"]);
  assert.deepEqual(d['frame-ancestors'], ["'none'"]);
  assert.deepEqual(d['base-uri'], ["'none'"]);
  assert.deepEqual(d['object-src'], ["'none'"]);
  assert.deepEqual(d['form-action'], ["'none'"]);
  assert.ok(d['connect-src'].includes("'self'"));
  assert.doesNotMatch(policy, /unsafe-|\*/, 'no unsafe-inline, unsafe-eval or wildcard');

  // The page's own <meta> copy (for copies served elsewhere) says the same, less the one
  // directive a <meta> cannot carry.
  const html = await (await fetch(`${relay.origin}/`)).text();
  const meta = html.match(/<meta http-equiv="Content-Security-Policy" content="([^"]+)"/)?.[1];
  assert.ok(meta, 'index.html has its policy in a meta');
  const { 'frame-ancestors': _, ...rest } = d;
  assert.deepEqual(directives(meta), rest);
});

test('the dashboard runs under its policy without a violation, and Chromium enforces it', { timeout: 60_000 }, async (t) => {
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  await page.goto(`${relay.origin}/#key=${APP.key}&token=${relay.token('viewer')}`);
  await until('connected', async () => (await page.locator('.conn').getAttribute('data-state')) === 'connected');
  // Everything the page draws: host list, a live panel with its uPlot charts and tables.
  await page.locator('li.host[data-host="epsilon"] button').click();
  await until('live charts', async () => {
    const p = await panelInfo(page, 'epsilon');
    return p?.state === 'live' && p.charts.length > 0 && p.points > 2;
  });
  assert.ok(await page.locator('article.panel canvas').count() > 0, 'charts drawn');
  await page.getByRole('button', { name: 'Change token' }).click();
  await page.locator('form.login').waitFor();
  assert.deepEqual(browser.cspViolations, [], 'no violation while the page works');

  // The policy is in force: an inline style attribute and an inline script are refused.
  const applied = await page.evaluate(() => {
    const d = document.createElement('div');
    d.setAttribute('style', 'color: rgb(1, 2, 3)');
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.body.append(d, s);
    return { color: getComputedStyle(d).color, script: window.__inlineRan === true };
  });
  assert.notEqual(applied.color, 'rgb(1, 2, 3)', 'inline style attribute refused');
  assert.equal(applied.script, false, 'inline script refused');
  await until('both refusals reported', () => {
    const seen = browser.cspViolations.map((v) => v.directive).filter(Boolean);
    return seen.includes('style-src-attr') && seen.includes('script-src-elem');
  });
  browser.cspViolations.length = 0;
});

test('a page on another origin cannot frame the dashboard', { timeout: 30_000 }, async (t) => {
  const framer = await servePages(
    {
      '/': `<!doctype html><title>framer</title><iframe id="dash" src="${relay.origin}/"></iframe><iframe id="own" src="/child"></iframe>`,
      '/child': '<!doctype html><p id="child">framed</p>',
    },
    'localhost',
  );
  t.after(() => framer.close());
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${framer.origin}/`, { waitUntil: 'load' });

  // The control: a frame that allows it loads, so a frame that did not was refused.
  const own = await (await page.$('#own')).contentFrame();
  assert.equal(await own.evaluate(() => document.getElementById('child')?.textContent), 'framed');

  const dash = await (await page.$('#dash')).contentFrame();
  assert.ok(!dash.url().startsWith(relay.origin), `the frame did not stay on the dashboard (${dash.url()})`);
  assert.equal(await dash.evaluate(() => document.getElementById('app') !== null).catch(() => false), false, 'no dashboard in the frame');
  await new Promise((res) => setTimeout(res, 500));
  assert.deepEqual(sockets, [], 'no websocket from a framed dashboard');
  // Chromium reports the refusal itself; that one is expected here.
  const rest = browser.cspViolations.filter((v) => !/frame-ancestors/.test(v.text ?? v.directive ?? ''));
  browser.cspViolations.length = 0;
  assert.deepEqual(rest, []);
});
