// The uPlot wrapper that draws one chart of a host panel.
//
// A chart is built for one spec (see specs.ts) and rebuilt only when the spec's series set
// changes (a new interface, a new custom metric); otherwise each update is one setData.

import uPlot from 'uplot';
import * as fmt from './format';
import { specKey, type ChartSpec } from './specs';
import type { Sample } from './store';

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
    /** Charts sharing a key move their cursors together (one host's charts). */
    syncKey: string,
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
      padding: [10, 20, 0, 2],
      cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 6 }, sync: { key: syncKey } },
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
            const was = this.hovering;
            this.hovering = u.cursor.left != null && u.cursor.left >= 0;
            // Off the chart, the legend shows the newest values.
            if (was && !this.hovering && this.lastIdx >= 0) queueMicrotask(() => this.plot.setLegend({ idx: this.lastIdx }));
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
    // uPlot commits in a microtask (and a new chart resets its legend then): follow it.
    queueMicrotask(() => {
      if (!this.hovering && this.lastIdx >= 0) this.plot.setLegend({ idx: this.lastIdx });
    });
  }

  /**
   * Slides the time window without new data. Redraws only once the window has moved by a
   * whole pixel: smooth to the eye, a few redraws a second instead of one per frame.
   */
  slide(window: [number, number]): void {
    const span = window[1] - window[0];
    const moved = ((window[1] - this.window[1]) / span) * this.plot.bbox.width / (devicePixelRatio || 1);
    if (Math.abs(moved) < 1) return;
    this.window = window;
    this.plot.setScale('x', { min: window[0], max: window[1] });
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
