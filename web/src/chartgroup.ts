// A set of charts drawn from one sample store: a host panel's, or one relay node's column on
// the relay page. The charts follow their container's width and are destroyed together; the
// owner draws them when the store is stale and otherwise slides the window, each by its own
// rules (a panel waits for a backfill's last part and stops sliding once the session ends).

import { Chart } from './charts';
import { el } from './dom';
import { specKey, type ChartSpec } from './specs';
import { SampleStore, WINDOW_MS, type Sample } from './store';

/** Samples this far before the window are drawn too, so a line enters from the left edge. */
const LEAD_MS = 2000;

export class ChartGroup {
  /** The charts' container; its children follow the order of the specs. */
  readonly root = el('div', { class: 'charts' });
  readonly store = new SampleStore();
  private charts = new Map<string, Chart>();
  private fresh = false;
  // The content box, not the padding box: a plot as wide as the figure's inside.
  private resizer = new ResizeObserver((entries) => {
    for (const e of entries) this.byRoot(e.target)?.resize(e.contentRect.width);
  });

  constructor(
    /** Charts sharing a key move their cursors together. */
    private syncKey: string,
    /** The width of a chart built before its container is laid out (the observer then corrects it). */
    private initialWidth: number,
  ) {}

  /** Adds samples to the store; a new one makes the charts stale. Returns how many were new. */
  add(batch: Sample[]): number {
    const added = this.store.add(batch);
    if (added > 0) this.fresh = true;
    return added;
  }

  /** Whether samples came since the last `draw`. */
  get stale(): boolean {
    return this.fresh;
  }

  get size(): number {
    return this.charts.size;
  }

  ids(): string[] {
    return [...this.charts.keys()];
  }

  /** The points drawn by one chart (0 for a chart that does not exist). */
  points(id: string): number {
    return this.charts.get(id)?.points ?? 0;
  }

  /** Keeps the charts whose spec is unchanged, builds the new or changed ones, drops the rest. */
  sync(specs: ChartSpec[]): void {
    const keep = new Map<string, Chart>();
    for (const spec of specs) {
      const old = this.charts.get(spec.id);
      keep.set(spec.id, old && old.key === specKey(spec) ? old : this.build(spec, old));
    }
    for (const [id, c] of this.charts) if (keep.get(id) !== c) this.drop(c);
    this.charts = keep;
    for (const c of this.charts.values()) this.root.append(c.root);
  }

  /** Draws the window that ends at `end` (ms) from the store; `interval` as in `SampleStore.rows`. */
  draw(end: number, interval: number | null): void {
    this.fresh = false;
    const w = timeWindow(end);
    const [xs, rows] = this.store.rows(end - WINDOW_MS - LEAD_MS, interval);
    for (const c of this.charts.values()) c.setData(xs, rows, w);
  }

  /** Moves the window to end at `end` (ms) without new data. */
  slide(end: number): void {
    const w = timeWindow(end);
    for (const c of this.charts.values()) c.slide(w);
  }

  destroy(): void {
    this.resizer.disconnect();
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    this.root.remove();
  }

  private build(spec: ChartSpec, old: Chart | undefined): Chart {
    const width = old?.root.clientWidth || this.root.clientWidth || this.initialWidth;
    const c = new Chart(spec, Math.min(width, this.root.clientWidth || width), this.syncKey);
    this.resizer.observe(c.root);
    return c;
  }

  private drop(c: Chart): void {
    this.resizer.unobserve(c.root);
    c.destroy();
  }

  private byRoot(target: Element): Chart | undefined {
    for (const c of this.charts.values()) if (c.root === target) return c;
    return undefined;
  }
}

/** The x range, in seconds, of the window that ends at `end` ms. */
function timeWindow(end: number): [number, number] {
  return [(end - WINDOW_MS) / 1000, end / 1000];
}
