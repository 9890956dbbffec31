import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fmt from '../src/format';

test('bytes use binary units with three significant digits', () => {
  assert.equal(fmt.bytes(0), '0 B');
  assert.equal(fmt.bytes(1023), '1023 B');
  assert.equal(fmt.bytes(1024), '1 KiB');
  assert.equal(fmt.bytes(1536), '1.50 KiB');
  assert.equal(fmt.bytes(10.5 * 1024 * 1024), '10.5 MiB');
  assert.equal(fmt.bytes(16_777_216_000), '15.6 GiB');
  assert.equal(fmt.bytes(null), '–');
  assert.equal(fmt.bytesPerSec(2048), '2 KiB/s');
});

test('percents, counts and rates', () => {
  assert.equal(fmt.pct(7.456), '7.5%');
  assert.equal(fmt.pct(38.1), '38%');
  assert.equal(fmt.pct(0), '0%');
  assert.equal(fmt.num(0.42), '0.42');
  assert.equal(fmt.num(12_345), '12.3k');
  assert.equal(fmt.num(3_400_000), '3.40M');
  assert.equal(fmt.perSec(4), '4/s');
  assert.equal(fmt.num(Number.NaN), '–');
});

test('durations and ages', () => {
  assert.equal(fmt.duration(23_400), '23s');
  assert.equal(fmt.duration(65_000), '1m 05s');
  assert.equal(fmt.duration(3 * 3600_000 + 12 * 60_000), '3h 12m');
  assert.equal(fmt.ago(1000, 2000), 'just now');
  assert.equal(fmt.ago(0, 5 * 60_000), '5m ago');
});

test('units come from the metric name suffix', () => {
  assert.equal(fmt.unitOf('net.eth0.rx_bytes_ps'), 'bytes_ps');
  assert.equal(fmt.unitOf('cpu.user_pct'), 'pct');
  assert.equal(fmt.unitOf('mem.used_bytes'), 'bytes');
  assert.equal(fmt.unitOf('app.checkout.count_ps'), 'ps');
  assert.equal(fmt.unitOf('system.load1'), 'plain');
  assert.equal(fmt.unitOf('app.checkout.latency.p99'), 'plain');
});
