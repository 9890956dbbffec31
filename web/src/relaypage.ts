// The relay's own page, for an operator token: the state each relay node publishes once a
// second on private-sonde-relay (only while someone watches, as an agent streams only while a
// viewer does), drawn with the same charts as a host, one column per node, and the flight
// recorder's latest slow events as a table.

import { ChartGroup } from './chartgroup';
import type { Relay } from './connection';
import { tokenRole } from './credentials';
import { el } from './dom';
import { EVENT_RELAY, RELAY_CHANNEL, SUBSCRIPTION_ERROR } from './names';
import * as origin from './origin';
import type { Target } from './origin';
import './relaypage.css';
import type { ChartSpec } from './specs';
import type { Sample } from './store';
import { SlowTable } from './slowtable';
import { UsageToday, todayOf } from './usagetoday';

/** Nodes drawn at most (a state from a node beyond this is dropped). */
const MAX_NODES = 16;

/** What one node publishes (relay/src/insight/live.rs). */
interface RelayState {
  node: string;
  ts_ms: number;
  /** Usage since midnight UTC (an object: not drawn as a chart). */
  today?: unknown;
  [figure: string]: unknown;
}

const SPECS: ChartSpec[] = [
  {
    id: 'relay-conns',
    title: 'Connections',
    unit: 'plain',
    series: [
      { metric: 'connections', label: 'connections', color: '#5b9bf8' },
      { metric: 'subscriptions', label: 'subscriptions', color: '#f59e42' },
      { metric: 'channels', label: 'channels', color: '#5fbf6a' },
    ],
  },
  {
    id: 'relay-traffic',
    title: 'Messages',
    unit: 'ps',
    series: [
      { metric: 'messages_in_ps', label: 'in', color: '#2ec4b6' },
      { metric: 'deliveries_ps', label: 'deliveries', color: '#b57edc' },
      { metric: 'passes_ps', label: 'fan-out passes', color: '#8b93a1', dash: [4, 3] },
    ],
  },
  {
    id: 'relay-latency',
    title: 'Publish → write (ms)',
    unit: 'plain',
    series: [
      { metric: 'write_p50_ms', label: 'p50', color: '#5fbf6a' },
      { metric: 'write_p99_ms', label: 'p99', color: '#f2555a' },
    ],
  },
  {
    id: 'relay-sessions',
    title: 'Sessions and queues',
    unit: 'plain',
    series: [
      { metric: 'sessions', label: 'sessions', color: '#e8c547' },
      { metric: 'agents_online', label: 'agents', color: '#5b9bf8' },
      { metric: 'webhook_queue', label: 'webhook queue', color: '#e76fa8' },
      { metric: 'cluster_nodes', label: 'nodes', color: '#8b93a1', dash: [4, 4] },
    ],
  },
];

/** A node's state as a sample: every numeric figure a metric (a missing p99 is a gap). */
function toSample(s: RelayState): Sample {
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(s)) if (k !== 'ts_ms' && typeof v === 'number' && Number.isFinite(v)) metrics[k] = v;
  return { ts: s.ts_ms, seq: 0, metrics };
}

/** One node's column: its name and charts. */
class NodeColumn {
  readonly root: HTMLElement;
  readonly charts = new ChartGroup('sonde-relay', 420);

  constructor(readonly node: string) {
    this.charts.sync(SPECS);
    this.root = el('section', { class: 'relay-node', 'data-node': node }, el('h3', { class: 'relay-node-name' }, node), this.charts.root);
  }

  add(s: Sample): void {
    this.charts.add([s]);
    this.root.dataset.points = String(this.charts.store.length);
  }

  /** Once per animation frame: redraws after a new state, otherwise slides the window to end now. */
  frame(now: number, slide: boolean): void {
    // No interval: a line joins across a missed state rather than breaking.
    if (this.charts.stale) this.charts.draw(now, null);
    else if (slide) this.charts.slide(now);
  }

  destroy(): void {
    this.charts.destroy();
    this.root.remove();
  }
}

export class RelayPage {
  readonly root: HTMLElement;
  private nodes = new Map<string, NodeColumn>();
  private nodesEl = el('div', { class: 'relay-nodes' });
  private note = el('p', { class: 'charts-note' }, 'Waiting for the relay’s first state…');
  private table: SlowTable;
  private today = new UsageToday();

  constructor(private relay: Relay, token: string, apiBase: string) {
    this.table = new SlowTable(`${apiBase}/debug/slow?limit=20`, token);
    this.root = el(
      'article',
      { class: 'panel relay-page', 'aria-label': 'Relay', 'data-state': 'waiting' },
      el('div', { class: 'panel-head' }, el('h2', { class: 'panel-host' }, 'Relay')),
      this.note,
      this.nodesEl,
      this.today.root,
      el('h3', { class: 'relay-section' }, 'Slow and failed events'),
      this.table.root,
    );
  }

  start(): void {
    const ch = this.relay.subscribe(RELAY_CHANNEL);
    ch.bind(EVENT_RELAY, (s: RelayState) => this.apply(s));
    ch.bind(SUBSCRIPTION_ERROR, () => {
      this.note.textContent = 'The relay refused its channel to this token (an operator token is needed).';
      this.root.dataset.state = 'refused';
    });
    this.table.start();
  }

  private apply(s: RelayState): void {
    if (!s || typeof s.node !== 'string' || typeof s.ts_ms !== 'number') return;
    let col = this.nodes.get(s.node);
    if (!col) {
      if (this.nodes.size >= MAX_NODES) return;
      col = new NodeColumn(s.node);
      this.nodes.set(s.node, col);
      // Nodes side by side, in name order.
      const sorted = [...this.nodes.values()].sort((a, b) => a.node.localeCompare(b.node));
      this.nodesEl.replaceChildren(...sorted.map((c) => c.root));
    }
    col.add(toSample(s));
    const today = todayOf(s.today);
    if (today) this.today.set(s.node, today);
    this.note.hidden = true;
    this.root.dataset.state = 'live';
  }

  frame(now: number, slide: boolean): void {
    for (const c of this.nodes.values()) c.frame(now, slide);
  }

  /** What a browser test reads: each node's newest figures and point count. */
  info(): Record<string, { points: number; latest: Record<string, number> | null }> {
    const out: Record<string, { points: number; latest: Record<string, number> | null }> = {};
    for (const [n, c] of this.nodes) out[n] = { points: c.charts.store.length, latest: c.charts.store.newest()?.metrics ?? null };
    return out;
  }

  /** What a browser test reads: today's totals as shown. */
  todayShown(): Record<string, number> {
    return this.today.shown();
  }

  close(): void {
    this.relay.unsubscribe(RELAY_CHANNEL);
    this.table.stop();
    for (const c of this.nodes.values()) c.destroy();
    this.nodes.clear();
    this.root.remove();
  }
}

declare global {
  interface Window {
    __sondeRelay?: RelayPage;
  }
}

/**
 * Shows the relay page above `before` when the token's role is operator; otherwise nothing.
 * The recorder is read from the relay the page talks to.
 */
export function mountRelayPage(relay: Relay, token: string, target: Target, before: HTMLElement): RelayPage | null {
  if (tokenRole(token) !== 'operator') return null;
  const base = target.kind === 'other' ? `${location.protocol}//${origin.label(target.relay)}` : location.pathname.replace(/\/[^/]*$/, '');
  const page = new RelayPage(relay, token, base);
  before.before(page.root);
  page.start();
  window.__sondeRelay = page;
  return page;
}
