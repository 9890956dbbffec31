// Today's usage on the relay page: what each node's state says under `today` (every app's
// totals since midnight UTC, relay/src/insight/usage_api.rs), figure by figure the largest
// any node reports (in a cluster each node holds the cluster's totals from when it started,
// so the longest-running one knows most).

import { el } from './dom';
import { num } from './format';

/** The figures of `today`, in the order shown, with their labels. */
const FIGURES: [key: string, label: string][] = [
  ['peak_connections', 'peak connections'],
  ['messages_in', 'messages in'],
  ['messages_out', 'messages out'],
  ['deliveries', 'deliveries'],
  ['peak_agents_online', 'peak agents online'],
  ['sessions_started', 'sessions'],
  ['session_minutes', 'session minutes'],
];

export type Today = Record<string, number>;

/** The figures of a state's `today`, numbers only (anything else is ignored). */
export function todayOf(value: unknown): Today | null {
  if (!value || typeof value !== 'object') return null;
  const out: Today = {};
  for (const [k] of FIGURES) {
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

export class UsageToday {
  readonly root: HTMLElement;
  private byNode = new Map<string, Today>();
  private cells = new Map<string, HTMLElement>();

  constructor() {
    const list = el('dl', { class: 'relay-today' });
    for (const [k, label] of FIGURES) {
      const value = el('dd', { 'data-figure': k }, '–');
      this.cells.set(k, value);
      list.append(el('div', {}, el('dt', {}, label), value));
    }
    this.root = el('section', { class: 'relay-today-section' }, el('h3', { class: 'relay-section' }, 'Today (UTC)'), list);
  }

  /** A node's latest totals. */
  set(node: string, today: Today): void {
    this.byNode.set(node, today);
    for (const [k] of FIGURES) {
      const values = [...this.byNode.values()].map((t) => t[k]).filter((v): v is number => v !== undefined);
      const cell = this.cells.get(k);
      if (cell) cell.textContent = values.length ? num(Math.max(...values)) : '–';
    }
  }

  /** What a browser test reads: the figures shown, as numbers. */
  shown(): Today {
    const out: Today = {};
    for (const t of this.byNode.values()) for (const [k, v] of Object.entries(t)) out[k] = Math.max(out[k] ?? 0, v);
    return out;
  }
}
