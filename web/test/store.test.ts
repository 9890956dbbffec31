import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SampleStore, WINDOW_MS, type Sample } from '../src/store';
import { chartSpecs, customGroups } from '../src/specs';

const s = (sec: number, metrics: Record<string, number> = { 'cpu.user_pct': sec }, top?: Sample['top']): Sample => ({ ts: sec * 1000, seq: sec, metrics, top });

test('samples merge by timestamp: a second backfill fills gaps without duplicates', () => {
  const store = new SampleStore();
  assert.equal(store.add([s(1), s(2), s(3)]), 3);
  assert.equal(store.add([s(10), s(11)]), 2);
  // After a reconnect the agent sends its whole ring again.
  assert.equal(store.add([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((x) => s(x))), 7);
  assert.deepEqual(store.samples.map((x) => x.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

test('the store keeps the window and the newest top list', () => {
  const store = new SampleStore();
  const top = [{ pid: 1, name: 'init', cpu_pct: 0.5, mem_bytes: 1024 }];
  store.add([s(1, {}, top)]);
  for (let i = 2; i < 400; i++) store.add([s(i)]);
  assert.ok(store.length <= WINDOW_MS / 1000 + 11, `${store.length} kept`);
  assert.equal(store.newest()!.seq, 399);
  assert.equal(store.top!.seq, 1);
});

test('invalid samples are ignored', () => {
  const store = new SampleStore();
  assert.equal(store.add([{ ts: Number.NaN, seq: 1, metrics: {} }, null as unknown as Sample]), 0);
  assert.equal(store.length, 0);
});

test('every app.* metric gets a chart; timer statistics share one', () => {
  const groups = customGroups(['cpu.user_pct', 'app.checkout.count_ps', 'app.lat.p99', 'app.lat.p50', 'app.lat.max', 'app.lat.count_ps', 'app.q']);
  assert.deepEqual(groups, [
    ['app.checkout.count_ps', ['app.checkout.count_ps']],
    ['app.lat (latency)', ['app.lat.p50', 'app.lat.p99', 'app.lat.max']],
    ['app.lat.count_ps', ['app.lat.count_ps']],
    ['app.q', ['app.q']],
  ]);
});

test('chart specs follow the metrics seen', () => {
  const store = new SampleStore();
  const metrics: Record<string, number> = {
    'cpu.user_pct': 10,
    'cpu.system_pct': 5,
    'cpu.idle_pct': 85,
    'system.load1': 0.5,
    'mem.used_bytes': 1e9,
    'mem.total_bytes': 8e9,
    'app.jobs.count_ps': 3,
  };
  for (const i of ['eth0', 'eth1', 'eth2', 'eth3', 'eth4']) {
    metrics[`net.${i}.rx_bytes_ps`] = i === 'eth4' ? 1e6 : 10;
    metrics[`net.${i}.tx_bytes_ps`] = 0;
  }
  store.add([s(1, metrics)]);
  const specs = chartSpecs(store, { cores: 4 });
  assert.deepEqual(specs.map((x) => x.id), ['cpu', 'load', 'mem', 'net', 'app:app.jobs.count_ps']);
  const cpu = specs[0];
  assert.deepEqual(cpu.series.map((x) => x.label), ['user', 'system']);
  assert.equal(cpu.yMax, 100);
  assert.ok(specs[1].series.some((x) => x.constant === 4), 'the load chart shows the cores');
  assert.equal(specs[2].yMax, 8e9);
  const ifaces = new Set(specs[3].series.map((x) => x.metric.split('.')[1]));
  assert.equal(ifaces.size, 4);
  assert.ok(ifaces.has('eth4'), 'the busiest interface is kept');
});

test('chart rows start at `from` and, given an interval, break the line where samples are missing', () => {
  const store = new SampleStore();
  store.add([1, 2, 3, 4, 8, 9].map((x) => s(x)));
  const [xs, rows] = store.rows(2000, 1000);
  assert.deepEqual(xs, [2, 3, 4, 5, 8, 9]);
  assert.deepEqual(rows.map((r) => r?.seq ?? null), [2, 3, 4, null, 8, 9]);
  // Two missing seconds (2.5 intervals not exceeded) stay one line; without an interval, so does any gap.
  store.add([s(11)]);
  assert.deepEqual(store.rows(8000, 1000)[1].map((r) => r?.seq ?? null), [8, 9, 11]);
  assert.deepEqual(store.rows(0, null)[0], [1, 2, 3, 4, 8, 9, 11]);
});
