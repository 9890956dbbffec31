import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import * as credentials from '../src/credentials';

// The browser globals credentials.ts uses, as plain objects: a tab's location, history and
// sessionStorage.
const storage = new Map<string, string>();
const tab = { hash: '', pathname: '/', search: '' };
Object.assign(globalThis, {
  location: tab,
  history: {
    replaceState: (_s: unknown, _t: string, url: string) => {
      tab.hash = url.includes('#') ? url.slice(url.indexOf('#')) : '';
    },
  },
  sessionStorage: {
    getItem: (k: string) => storage.get(k) ?? null,
    setItem: (k: string, v: string) => void storage.set(k, String(v)),
    removeItem: (k: string) => void storage.delete(k),
  },
});

beforeEach(() => {
  storage.clear();
  tab.hash = '';
});

test('a link’s ws= is returned as a request and not remembered before it is confirmed', () => {
  tab.hash = '#key=k&token=ey.t&ws=evil.example:443';
  const opened = credentials.load();
  assert.deepEqual(opened, { creds: { key: 'k', token: 'ey.t' }, requestedRelay: 'evil.example:443' });
  assert.equal(tab.hash, '', 'the fragment leaves the address bar');
  assert.equal(credentials.rememberedRelay(), undefined);
  assert.deepEqual(JSON.parse(storage.get('sonde.credentials')!), { key: 'k', token: 'ey.t' }, 'no relay kept with the credentials');
});

test('ws= alone keeps the tab’s stored credentials and still only requests', () => {
  credentials.save({ key: 'k', token: 'ey.t' });
  tab.hash = '#ws=evil.example:443';
  assert.deepEqual(credentials.load(), { creds: { key: 'k', token: 'ey.t' }, requestedRelay: 'evil.example:443' });
  assert.equal(credentials.rememberedRelay(), undefined);
});

test('a relay is remembered only when confirmed, and forgotten on request', () => {
  credentials.rememberRelay('other.example:6001');
  assert.equal(credentials.rememberedRelay(), 'other.example:6001');
  assert.deepEqual(credentials.load(), { creds: null, requestedRelay: undefined });
  credentials.forgetRelay();
  assert.equal(credentials.rememberedRelay(), undefined);
});

test('credentials stored by an older page with a ws field lose it', () => {
  storage.set('sonde.credentials', JSON.stringify({ key: 'k', token: 'ey.t', ws: 'evil.example:443' }));
  assert.deepEqual(credentials.load(), { creds: { key: 'k', token: 'ey.t' }, requestedRelay: undefined });
});

test('a token’s expiry and role are read from its claims; anything unreadable gives none', () => {
  const jwt = (claims: unknown) => `h.${btoa(JSON.stringify(claims)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}.s`;
  assert.equal(credentials.tokenExpiry(jwt({ exp: 1700000000, role: 'operator' })), 1700000000_000);
  assert.equal(credentials.tokenRole(jwt({ exp: 1700000000, role: 'operator' })), 'operator');
  assert.equal(credentials.tokenRole(jwt({ role: 7 })), null);
  assert.equal(credentials.tokenExpiry(jwt({ exp: '1700000000' })), null);
  for (const bad of ['', 'no-dots', 'h.%%%.s', jwt(null), jwt(5)]) {
    assert.equal(credentials.tokenExpiry(bad), null, bad);
    assert.equal(credentials.tokenRole(bad), null, bad);
  }
});
