// Which charts a host panel shows, picked from the metric names seen so far. Pure: no DOM,
// so it is tested under node.

import * as fmt from './format';
import type { SampleStore } from './store';

export interface SeriesSpec {
  metric: string;
  label: string;
  color: string;
  dash?: number[];
  /** Part of the stack (filled, drawn on top of the previous stacked series). */
  stack?: boolean;
  /** A constant line (e.g. the number of cores on a load chart). */
  constant?: number;
}

export interface ChartSpec {
  id: string;
  title: string;
  unit: fmt.Unit;
  series: SeriesSpec[];
  /** Fixed y maximum (100 for a CPU stack, total memory for memory). */
  yMax?: number;
}

export interface PanelContext {
  cores?: number;
}

const C = {
  blue: '#5b9bf8',
  orange: '#f59e42',
  red: '#f2555a',
  purple: '#b57edc',
  green: '#5fbf6a',
  teal: '#2ec4b6',
  yellow: '#e8c547',
  pink: '#e76fa8',
  grey: '#8b93a1',
};
const PALETTE = [C.blue, C.orange, C.green, C.purple, C.teal, C.yellow, C.pink, C.red];
const TOP_INSTANCES = 4;

/** The charts for the metrics seen so far, in display order. */
export function chartSpecs(store: SampleStore, ctx: PanelContext): ChartSpec[] {
  const names = store.names;
  const has = (n: string) => names.has(n);
  const specs: ChartSpec[] = [];

  const cpu: SeriesSpec[] = (
    [
      ['cpu.user_pct', 'user', C.blue],
      ['cpu.system_pct', 'system', C.orange],
      ['cpu.iowait_pct', 'iowait', C.red],
      ['cpu.steal_pct', 'steal', C.purple],
    ] as const
  )
    .filter(([m]) => has(m))
    .map(([metric, label, color]) => ({ metric, label, color, stack: true }));
  if (cpu.length) specs.push({ id: 'cpu', title: 'CPU', unit: 'pct', series: cpu, yMax: 100 });

  const load: SeriesSpec[] = (
    [
      ['system.load1', '1 min', C.green],
      ['system.load5', '5 min', C.blue],
      ['system.load15', '15 min', C.purple],
    ] as const
  )
    .filter(([m]) => has(m))
    .map(([metric, label, color]) => ({ metric, label, color }));
  if (load.length && ctx.cores) load.push({ metric: '', label: 'cores', color: C.grey, dash: [4, 4], constant: ctx.cores });
  if (load.length) specs.push({ id: 'load', title: 'Load', unit: 'plain', series: load });

  const mem: SeriesSpec[] = (
    [
      ['mem.used_bytes', 'used', C.blue, true],
      ['mem.cached_bytes', 'cache', C.green, true],
      ['mem.buffers_bytes', 'buffers', C.teal, true],
      ['mem.swap_used_bytes', 'swap used', C.red, false],
    ] as const
  )
    .filter(([m]) => has(m))
    .map(([metric, label, color, stack]) => ({ metric, label, color, stack }));
  if (mem.length) {
    const total = store.newest()?.metrics['mem.total_bytes'];
    specs.push({ id: 'mem', title: 'Memory', unit: 'bytes', series: mem, yMax: total || undefined });
  }

  const ifaces = busiest(store, 'net', ['rx_bytes_ps', 'tx_bytes_ps']);
  if (ifaces.length) {
    const series = ifaces.flatMap((i, n) => [
      { metric: `net.${i}.rx_bytes_ps`, label: `${i} in`, color: PALETTE[n % PALETTE.length] },
      { metric: `net.${i}.tx_bytes_ps`, label: `${i} out`, color: PALETTE[n % PALETTE.length], dash: [5, 3] },
    ]);
    specs.push({ id: 'net', title: 'Network', unit: 'bytes_ps', series });
  }

  const disks = busiest(store, 'disk', ['read_bytes_ps', 'write_bytes_ps']);
  if (disks.length) {
    const series = disks.flatMap((d, n) => [
      { metric: `disk.${d}.read_bytes_ps`, label: `${d} read`, color: PALETTE[n % PALETTE.length] },
      { metric: `disk.${d}.write_bytes_ps`, label: `${d} write`, color: PALETTE[n % PALETTE.length], dash: [5, 3] },
    ]);
    specs.push({ id: 'disk', title: 'Disk I/O', unit: 'bytes_ps', series });
  }

  for (const [title, metrics] of customGroups(names)) {
    const unit = fmt.unitOf(metrics[0]);
    const series = metrics.map((metric, n) => ({
      metric,
      label: metrics.length > 1 ? metric.slice(metric.lastIndexOf('.') + 1) : 'value',
      color: PALETTE[n % PALETTE.length],
    }));
    specs.push({ id: `app:${title}`, title, unit, series });
  }
  return specs;
}

/**
 * Every `app.*` name gets a chart; a timer's statistics (p50, p90, p99, max) share one.
 * Returns title → metric names, sorted by title.
 */
export function customGroups(names: Iterable<string>): [string, string[]][] {
  const groups = new Map<string, string[]>();
  const order = ['p50', 'p90', 'p99', 'max'];
  for (const name of names) {
    if (!name.startsWith('app.')) continue;
    const m = /^(.*)\.(p50|p90|p99|max)$/.exec(name);
    const key = m ? `${m[1]} (latency)` : name;
    const list = groups.get(key) ?? [];
    list.push(name);
    groups.set(key, list);
  }
  for (const list of groups.values()) {
    list.sort((a, b) => order.indexOf(a.slice(a.lastIndexOf('.') + 1)) - order.indexOf(b.slice(b.lastIndexOf('.') + 1)));
  }
  return [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

/** Instances of a group (interfaces, disks) with the most traffic over the last minute. */
function busiest(store: SampleStore, group: string, fields: string[]): string[] {
  const instances = new Set<string>();
  const prefix = `${group}.`;
  for (const name of store.names) {
    if (!name.startsWith(prefix)) continue;
    const field = name.slice(name.lastIndexOf('.') + 1);
    if (fields.includes(field)) instances.add(name.slice(prefix.length, name.lastIndexOf('.')));
  }
  if (instances.size <= TOP_INSTANCES) return [...instances].sort();
  const recent = store.samples.slice(-60);
  const traffic = (i: string) =>
    recent.reduce((sum, s) => sum + fields.reduce((t, f) => t + (s.metrics[`${prefix}${i}.${f}`] ?? 0), 0), 0);
  return [...instances]
    .map((i) => [i, traffic(i)] as const)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, TOP_INSTANCES)
    .map(([i]) => i)
    .sort();
}

export function specKey(spec: ChartSpec): string {
  return `${spec.unit}|${spec.yMax ?? ''}|${spec.series.map((s) => `${s.metric}:${s.constant ?? ''}`).join(',')}`;
}
