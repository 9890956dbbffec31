// A host's recent samples, oldest first, one per second at most. Backfills and live samples
// merge by timestamp, so a history that arrives again after a reconnect fills the gap
// instead of duplicating points.

export interface TopProcess {
  pid: number;
  name: string;
  cpu_pct: number;
  mem_bytes: number;
}

export interface Sample {
  ts: number;
  seq: number;
  metrics: Record<string, number>;
  top?: TopProcess[];
}

export const WINDOW_MS = 5 * 60 * 1000;

export class SampleStore {
  readonly samples: Sample[] = [];
  /** Every metric name seen, in first-seen order. */
  readonly names = new Set<string>();
  /** Bumped when `names` grows, so charts know to look for new series. */
  namesRev = 0;
  /** The newest sample that carried a top list. */
  top: Sample | null = null;

  get length(): number {
    return this.samples.length;
  }

  newest(): Sample | undefined {
    return this.samples[this.samples.length - 1];
  }

  /** Adds samples (any order); returns how many were new. */
  add(batch: Sample[]): number {
    let added = 0;
    for (const s of batch) {
      if (!valid(s)) continue;
      if (this.insert(s)) added++;
      for (const name in s.metrics) {
        if (!this.names.has(name)) {
          this.names.add(name);
          this.namesRev++;
        }
      }
      if (s.top && s.top.length > 0 && (!this.top || s.ts >= this.top.ts)) this.top = s;
    }
    this.trim();
    return added;
  }

  /**
   * The samples from `from` (ms) on as a chart's x values (seconds) and rows. With an
   * `interval`, samples more than 2.5 intervals apart get a null row between them (a gap, not a
   * line); without one, lines join across missing samples.
   */
  rows(from: number, interval: number | null): [number[], (Sample | null)[]] {
    const xs: number[] = [];
    const rows: (Sample | null)[] = [];
    let prev: Sample | null = null;
    for (const s of this.samples) {
      if (s.ts < from) continue;
      if (prev && interval !== null && s.ts - prev.ts > interval * 2.5) {
        xs.push((prev.ts + interval) / 1000);
        rows.push(null);
      }
      xs.push(s.ts / 1000);
      rows.push(s);
      prev = s;
    }
    return [xs, rows];
  }

  private insert(s: Sample): boolean {
    const a = this.samples;
    const last = a[a.length - 1];
    if (!last || s.ts > last.ts) {
      a.push(s);
      return true;
    }
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid].ts < s.ts) lo = mid + 1;
      else hi = mid;
    }
    if (a[lo]?.ts === s.ts) {
      // Same second seen twice: keep the one with a top list.
      if (s.top?.length && !a[lo].top?.length) a[lo] = s;
      return false;
    }
    a.splice(lo, 0, s);
    return true;
  }

  private trim(): void {
    const last = this.newest();
    if (!last) return;
    const cutoff = last.ts - WINDOW_MS - 10_000;
    let n = 0;
    while (n < this.samples.length && this.samples[n].ts < cutoff) n++;
    if (n > 0) this.samples.splice(0, n);
  }
}

function valid(s: Sample): boolean {
  return !!s && typeof s.ts === 'number' && Number.isFinite(s.ts) && !!s.metrics && typeof s.metrics === 'object';
}
