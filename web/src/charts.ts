// Which charts a host panel shows, and the uPlot wrapper that draws one.
//
// A chart is a spec (title, unit, how to pick its series from the metric names seen) and a
// uPlot instance built for the series picked. Charts are rebuilt only when their series set
// changes (a new interface, a new custom metric); otherwise each update is one setData.

import uPlot from 'uplot';
import * as fmt from './format';
import type { Sample, SampleStore } from './store';

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

const BYTE_INCRS = (() => {
  const out: number[] = [];
  for (let e = 0; e <= 5; e++) for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) out.push(m * 1024 ** e);
  return out;
})();

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function timeLabel(sec: number, withSeconds: boolean): string {
  const d = new Date(sec * 1000);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  return withSeconds ? `${hh}:${mm}:${String(d.getSeconds()).padStart(2, '0')}` : `${hh}:${mm}`;
}

/** One chart: a title, a uPlot canvas and its legend. */
export class Chart {
  readonly root: HTMLElement;
  readonly key: string;
  private plot: uPlot;
  private raw: (number | null)[][] = [];
  private hovering = false;
  private window: [number, number] = [0, 1];
  private fmtValue: (n: number | null | undefined) => string;
  private lastIdx = -1;
  points = 0;

  constructor(
    readonly spec: ChartSpec,
    width: number,
  ) {
    this.key = specKey(spec);
    this.fmtValue = fmt.formatter(spec.unit);
    this.root = document.createElement('figure');
    this.root.className = 'chart';
    this.root.dataset.chart = spec.id;
    const caption = document.createElement('figcaption');
    const hoverTime = document.createElement('span');
    hoverTime.className = 'hover-time';
    caption.append(spec.title, hoverTime);
    this.root.append(caption);

    const axis = cssVar('--chart-axis', '#9aa3b2');
    const grid = cssVar('--chart-grid', 'rgba(255,255,255,0.07)');
    const font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    const stackedIdx = spec.series.map((s, i) => (s.stack ? i + 1 : -1)).filter((i) => i > 0);
    const bands: uPlot.Band[] = [];
    for (let k = 1; k < stackedIdx.length; k++) bands.push({ series: [stackedIdx[k], stackedIdx[k - 1]] });

    const yMax = spec.yMax;
    const opts: uPlot.Options = {
      width: Math.max(200, width),
      height: 150,
      padding: [10, 12, 0, 2],
      cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: { time: true, range: () => this.window },
        y: {
          range: (_u, _min, max) => {
            if (yMax) return [0, yMax];
            const top = max > 0 ? max * 1.15 : 1;
            return [0, top];
          },
        },
      },
      axes: [
        {
          stroke: axis,
          font,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1, size: 4 },
          space: 48,
          values: (_u, splits, _ax, _space, incr) => splits.map((v) => timeLabel(v, incr < 60)),
        },
        {
          stroke: axis,
          font,
          size: 62,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1, size: 4 },
          space: 28,
          incrs: spec.unit === 'bytes' || spec.unit === 'bytes_ps' ? BYTE_INCRS : undefined,
          values: (_u, splits) => splits.map((v) => this.fmtValue(v)),
        },
      ],
      series: [
        { value: (_u, v) => (v == null ? '–' : timeLabel(v, true)) },
        ...spec.series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          width: s.stack ? 0.75 : 1.5,
          dash: s.dash,
          fill: s.stack ? s.color + '80' : undefined,
          points: { show: false },
          spanGaps: false,
          value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) =>
            idx == null ? '–' : this.fmtValue(this.raw[i]?.[idx]),
        })),
      ],
      bands,
      hooks: {
        setCursor: [
          (u) => {
            this.hovering = u.cursor.left != null && u.cursor.left >= 0;
            const idx = u.cursor.idx;
            const x = this.hovering && idx != null ? u.data[0][idx] : null;
            hoverTime.textContent = x == null ? '' : timeLabel(x, true);
          },
        ],
      },
    };
    this.plot = new uPlot(opts, [[]], this.root);
  }

  /** New data: `xs` in seconds, `rows[k]` the sample at `xs[k]` (null for a gap). */
  setData(xs: number[], rows: (Sample | null)[], window: [number, number]): void {
    this.window = window;
    const n = xs.length;
    const ys: (number | null)[][] = [];
    this.raw = [];
    const acc = new Array<number>(n).fill(0);
    let points = 0;
    for (const s of this.spec.series) {
      const raw = new Array<number | null>(n);
      const drawn = new Array<number | null>(n);
      for (let k = 0; k < n; k++) {
        const row = rows[k];
        const v = row == null ? null : s.constant ?? row.metrics[s.metric] ?? null;
        raw[k] = v;
        if (s.stack) {
          if (v == null) drawn[k] = row == null ? null : acc[k];
          else drawn[k] = acc[k] += v;
        } else drawn[k] = v;
      }
      this.raw.push(raw);
      ys.push(drawn);
    }
    for (const row of rows) if (row) points++;
    this.points = points;
    this.lastIdx = lastIndex(rows);
    this.plot.setData([xs, ...ys] as uPlot.AlignedData);
    if (!this.hovering && this.lastIdx >= 0) this.plot.setLegend({ idx: this.lastIdx });
  }

  /** Slides the time window without new data. */
  slide(window: [number, number]): void {
    this.window = window;
    this.plot.setScale('x', { min: window[0], max: window[1] });
    if (!this.hovering && this.lastIdx >= 0) this.plot.setLegend({ idx: this.lastIdx });
  }

  resize(width: number): void {
    const w = Math.max(200, Math.floor(width));
    if (w !== this.plot.width) this.plot.setSize({ width: w, height: 150 });
  }

  destroy(): void {
    this.plot.destroy();
    this.root.remove();
  }
}

function lastIndex(rows: (Sample | null)[]): number {
  for (let k = rows.length - 1; k >= 0; k--) if (rows[k]) return k;
  return rows.length - 1;
}
