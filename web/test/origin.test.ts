import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, isOwn, label, ownLabel, parseRelay } from '../src/origin';

const page = { protocol: 'http:', hostname: 'relay.example', port: '6001' };
const tlsPage = { protocol: 'https:', hostname: 'relay.example', port: '' };

test('relay addresses: host, host:port and [v6]:port, lower-cased', () => {
  assert.deepEqual(parseRelay('127.0.0.1:6001'), { host: '127.0.0.1', port: 6001 });
  assert.deepEqual(parseRelay('Relay.Example'), { host: 'relay.example', port: 0 });
  assert.deepEqual(parseRelay('relay.example.:443'), { host: 'relay.example', port: 443 });
  assert.deepEqual(parseRelay('[::1]:6001'), { host: '[::1]', port: 6001 });
  assert.deepEqual(parseRelay(' xn--bcher-kva.example:80 '), { host: 'xn--bcher-kva.example', port: 80 });
  assert.equal(label({ host: '[::1]', port: 6001 }), '[::1]:6001');
  assert.equal(label({ host: 'relay.example', port: 0 }), 'relay.example');
});

test('anything that is not plainly a host and port is refused', () => {
  for (const bad of [
    '',
    'ws://evil.example:6001',
    'evil.example/app',
    'user@evil.example',
    'evil.example:0',
    'evil.example:65536',
    'evil.example:',
    'evil.example:80:80',
    '::1',
    '[::1',
    '[fe80::1%eth0]:80',
    'bücher.example',
    'ev il.example',
    '-evil.example',
    'evil..example',
    'evil.example#x',
    'evil.example?x',
    `${'a'.repeat(64)}.example`,
  ]) {
    assert.equal(parseRelay(bad), null, bad);
  }
});

test('the page’s own host and port, with the scheme’s default port', () => {
  assert.ok(isOwn({ host: 'relay.example', port: 6001 }, page));
  assert.ok(!isOwn({ host: 'relay.example', port: 6002 }, page));
  assert.ok(!isOwn({ host: 'relay.example', port: 0 }, page), 'port 80 is not 6001');
  assert.ok(!isOwn({ host: 'other.example', port: 6001 }, page));
  assert.ok(isOwn({ host: 'relay.example', port: 0 }, tlsPage));
  assert.ok(isOwn({ host: 'relay.example', port: 443 }, tlsPage));
  assert.ok(!isOwn({ host: 'relay.example', port: 80 }, tlsPage));
  assert.ok(isOwn({ host: '[::1]', port: 6001 }, { protocol: 'http:', hostname: '[::1]', port: '6001' }));
  assert.equal(ownLabel(tlsPage), 'relay.example:443');
  assert.equal(ownLabel(page), 'relay.example:6001');
});

test('without ws= the page uses its own relay, or the one confirmed earlier in this tab', () => {
  assert.deepEqual(decide(undefined, undefined, page), { kind: 'own', forget: false });
  assert.deepEqual(decide(undefined, 'other.example:6001', page), { kind: 'remembered', relay: { host: 'other.example', port: 6001 } });
  // A remembered value that is not (or no longer) another relay is dropped.
  assert.deepEqual(decide(undefined, 'relay.example:6001', page), { kind: 'own', forget: true });
  assert.deepEqual(decide(undefined, 'garbage/x', page), { kind: 'own', forget: true });
});

test('a link naming another relay asks first, unless this tab confirmed that very relay', () => {
  assert.deepEqual(decide('evil.example:443', undefined, page), { kind: 'ask', relay: { host: 'evil.example', port: 443 } });
  assert.deepEqual(decide('relay.example:6002', undefined, page), { kind: 'ask', relay: { host: 'relay.example', port: 6002 } });
  assert.deepEqual(decide('evil.example:443', 'other.example:6001', page), { kind: 'ask', relay: { host: 'evil.example', port: 443 } });
  assert.deepEqual(decide('Other.Example:6001', 'other.example:6001', page), { kind: 'remembered', relay: { host: 'other.example', port: 6001 } });
  // Same host, other scheme default: still another relay.
  assert.equal(decide('relay.example', undefined, tlsPage).kind, 'own');
  assert.equal(decide('relay.example:80', undefined, tlsPage).kind, 'ask');
});

test('a link naming the page’s own relay needs no question and drops an earlier choice', () => {
  assert.deepEqual(decide('relay.example:6001', 'other.example:6001', page), { kind: 'own', forget: true });
  assert.deepEqual(decide('RELAY.example:6001', undefined, page), { kind: 'own', forget: true });
});

test('a ws= that is not an address is reported, never connected to', () => {
  assert.deepEqual(decide('ws://evil.example', 'other.example:6001', page), { kind: 'invalid', text: 'ws://evil.example' });
});
