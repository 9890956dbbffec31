// One host being watched: its channel subscription, session state, samples and charts.

import type { Channel } from 'pusher-js';
import { ChartGroup } from './chartgroup';
import { chartSpecs } from './specs';
import { describeSubscriptionError, type Relay, type SubscriptionError } from './connection';
import { el, setText } from './dom';
import { EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SESSION, SUBSCRIPTION_ERROR, SUBSCRIPTION_SUCCEEDED, hostChannel } from './names';
import { FilesystemTable } from './filesystems';
import { CoreBars, StatsStrip, TopTable } from './tables';
import * as fmt from './format';
import type { Agent } from './inventory';
import type { SampleStore, Sample } from './store';

interface Directive {
  // 'backfill' asks the agent for the history of one viewer that joined; for the others it is
  // a renewal of the running session.
  state: 'started' | 'renewed' | 'stopped' | 'backfill';
  id: string;
  interval_ms?: number;
  lease_until?: number;
}

interface Backfill {
  session: string;
  part: number;
  parts: number;
  samples: Sample[];
}

export type PanelState = 'subscribing' | 'starting' | 'history' | 'live' | 'stalled' | 'reconnecting' | 'stopped' | 'ended' | 'refused';

export interface PanelHooks {
  agent(host: string): Agent | undefined;
  closed(host: string): void;
}

export class HostPanel {
  readonly root: HTMLElement;
  readonly store: SampleStore;
  private channel: Channel | null = null;
  private charts: ChartGroup;
  private chartsNote: HTMLElement;
  private stateEl: HTMLElement;
  private metaEl: HTMLElement;
  private stopBtn: HTMLButtonElement;
  private resumeBtn: HTMLButtonElement;
  private stats: StatsStrip;
  private cores = new CoreBars();
  private top: TopTable;
  private filesystems: FilesystemTable;
  private offState: () => void;

  private watching = false;
  private subscribed = false;
  private subscribedAt = 0;
  private refused: string | null = null;
  private session: { id: string; interval: number; leaseUntil: number } | null = null;
  private sessionStopped = false;
  private backfill: { session: string; part: number; parts: number; at: number } | null = null;
  private lastSampleAt = 0;
  private offsets: number[] = [];
  private frozenEnd = 0;
  private specsRev = -1;
  private specsAt = 0;
  private lastText = 0;
  state: PanelState = 'subscribing';

  constructor(
    readonly host: string,
    private relay: Relay,
    private hooks: PanelHooks,
  ) {
    const title = el('h2', { class: 'panel-host', id: `panel-${cssId(host)}` }, host);
    const facts = hooks.agent(host)?.snapshot?.facts;
    if (facts) title.title = `${facts.os} · kernel ${facts.kernel} · agent ${facts.agent_version}`;
    this.stateEl = el('span', { class: 'session-state', role: 'status', 'aria-live': 'polite' });
    this.metaEl = el('div', { class: 'panel-meta' });
    this.stopBtn = el('button', { type: 'button', class: 'btn btn-stop' }, 'Stop');
    this.resumeBtn = el('button', { type: 'button', class: 'btn btn-primary', hidden: '' }, 'Resume');
    const closeBtn = el('button', { type: 'button', class: 'btn btn-ghost', 'aria-label': `Close ${host}` }, 'Close');
    this.stopBtn.setAttribute('aria-label', `Stop watching ${host}`);
    this.stopBtn.addEventListener('click', () => {
      this.stop();
      this.resumeBtn.focus();
    });
    this.resumeBtn.addEventListener('click', () => this.resume());
    closeBtn.addEventListener('click', () => this.close());

    this.stats = new StatsStrip();
    this.charts = new ChartGroup(`sonde-${host}`, 480);
    this.store = this.charts.store;
    this.chartsNote = el('p', { class: 'charts-note' }, 'Waiting for the first samples…');
    this.top = new TopTable(host);
    this.filesystems = new FilesystemTable(host);

    this.root = el(
      'article',
      { class: 'panel', 'data-host': host, tabindex: '-1', 'aria-labelledby': title.id },
      el(
        'header',
        { class: 'panel-head' },
        el('div', { class: 'panel-title' }, title, this.stateEl),
        el('div', { class: 'panel-actions' }, this.stopBtn, this.resumeBtn, closeBtn),
        this.metaEl,
      ),
      this.stats.root,
      this.cores.root,
      this.chartsNote,
      this.charts.root,
      el('div', { class: 'tables' }, this.top.root, this.filesystems.root),
    );
    this.offState = relay.onState((s) => {
      if (s !== 'connected') this.subscribed = false;
      this.lastText = 0;
    });
  }

  get channelName(): string {
    return hostChannel(this.host);
  }

  /** Subscribes: the relay starts a session for the first viewer. */
  start(): void {
    if (this.watching) return;
    this.watching = true;
    this.refused = null;
    this.sessionStopped = false;
    this.session = null;
    this.backfill = null;
    this.subscribed = false;
    const ch = this.relay.subscribe(this.channelName);
    this.channel = ch;
    ch.bind(SUBSCRIPTION_SUCCEEDED, () => {
      this.subscribed = true;
      this.subscribedAt = Date.now();
      this.refused = null;
      this.sessionStopped = false;
      this.lastText = 0;
    });
    ch.bind(SUBSCRIPTION_ERROR, (e: SubscriptionError) => {
      this.refused = describeSubscriptionError(e);
      this.lastText = 0;
    });
    ch.bind(EVENT_SESSION, (d: Directive) => this.directive(d));
    ch.bind(EVENT_BACKFILL, (b: Backfill) => this.onBackfill(b));
    ch.bind(EVENT_SAMPLE, (s: Sample) => this.onSample(s));
    this.lastText = 0;
  }

  /** Starts watching again; after the relay stopped the session, subscribes anew to start another. */
  resume(): void {
    if (this.watching) this.stop();
    this.start();
    this.syncButtons();
    this.stopBtn.focus();
  }

  /** Stop while watching, Resume after; Restart too when the relay stopped the session. */
  private syncButtons(): void {
    const restart = this.watching && this.state === 'stopped';
    this.stopBtn.hidden = !this.watching;
    this.resumeBtn.hidden = this.watching && !restart;
    const label = this.watching ? 'Restart' : 'Resume';
    setText(this.resumeBtn, label);
    this.resumeBtn.setAttribute('aria-label', `${label} watching ${this.host}`);
  }

  /** Ends watching: unsubscribes (the relay stops the session after its grace). Keeps the points. */
  stop(): void {
    if (!this.watching) return;
    this.watching = false;
    this.frozenEnd = this.windowEnd();
    this.channel?.unbind_all();
    this.channel = null;
    this.relay.unsubscribe(this.channelName);
    this.lastText = 0;
    this.syncButtons();
  }

  close(): void {
    this.stop();
    this.offState();
    this.charts.destroy();
    this.root.remove();
    this.hooks.closed(this.host);
  }

  isWatching(): boolean {
    return this.watching;
  }

  points(): number {
    return this.store.length;
  }

  chartPoints(id: string): number {
    return this.charts.points(id);
  }

  chartIds(): string[] {
    return this.charts.ids();
  }

  private directive(d: Directive): void {
    if (!d || typeof d.id !== 'string') return;
    const interval = d.interval_ms || 1000;
    const lease = d.lease_until || 0;
    if (d.state === 'stopped') {
      if (!this.session || this.session.id === d.id) this.sessionStopped = true;
    } else if (d.state === 'started' || !this.session || this.session.id !== d.id) {
      if (this.session?.id !== d.id) this.backfill = null;
      this.session = { id: d.id, interval, leaseUntil: lease };
      this.sessionStopped = false;
    } else {
      this.session.leaseUntil = Math.max(this.session.leaseUntil, lease);
    }
    this.lastText = 0;
  }

  private onBackfill(b: Backfill): void {
    if (!b || !Array.isArray(b.samples)) return;
    this.backfill = { session: b.session, part: b.part, parts: b.parts, at: Date.now() };
    this.charts.add(b.samples);
    this.lastText = 0;
  }

  private onSample(s: Sample): void {
    const now = Date.now();
    this.charts.add([s]);
    this.lastSampleAt = now;
    // Clock offset to the agent: the quickest delivery seen lately is the best estimate.
    this.offsets.push(s.ts - now);
    if (this.offsets.length > 20) this.offsets.shift();
    if (this.state !== 'live') this.lastText = 0;
  }

  private interval(): number {
    return this.session?.interval ?? 1000;
  }

  /** The agent's "now", estimated from when samples arrive. */
  private serverNow(): number {
    const offset = this.offsets.length ? Math.max(...this.offsets) : 0;
    return Date.now() + offset;
  }

  private windowEnd(): number {
    if (!this.watching) return this.frozenEnd || this.store.newest()?.ts || Date.now();
    if (this.sessionStopped) return this.store.newest()?.ts ?? Date.now();
    return Math.max(this.serverNow(), this.store.newest()?.ts ?? 0);
  }

  private computeState(now: number): [PanelState, string] {
    if (!this.watching) return ['ended', 'Stopped'];
    if (this.refused) return ['refused', `Refused: ${this.refused}`];
    const conn = this.relay.state;
    if (conn === 'failed') return ['reconnecting', 'Connection failed'];
    if (conn !== 'connected') return ['reconnecting', 'Reconnecting…'];
    if (!this.subscribed) return ['subscribing', 'Subscribing…'];
    if (this.sessionStopped) return ['stopped', 'Session stopped'];
    const b = this.backfill;
    if (b && b.part + 1 < b.parts && this.lastSampleAt < this.subscribedAt) return ['history', `Loading history ${b.part + 1}/${b.parts}`];
    if (this.lastSampleAt > this.subscribedAt) {
      const quiet = now - this.lastSampleAt;
      if (quiet < this.interval() * 3 + 500) return ['live', 'Live'];
      const agent = this.hooks.agent(this.host);
      if (agent && !agent.online) return ['stalled', 'Host offline'];
      return ['stalled', `No data for ${fmt.duration(quiet)}`];
    }
    const agent = this.hooks.agent(this.host);
    if (agent && !agent.online) return ['stalled', 'Host offline, waiting for its agent'];
    return ['starting', 'Starting session…'];
  }

  /** Called once per animation frame by the page's render loop. */
  frame(now: number, slide: boolean): void {
    if (now - this.lastText >= 1000) {
      this.lastText = now;
      this.updateText(now);
    }
    if (this.charts.stale && !this.backfillPending(now)) this.redraw(now);
    else if (slide && this.watching && !this.sessionStopped && this.store.length > 0) this.charts.slide(this.windowEnd());
  }

  /** While a backfill's parts are still coming, the history is drawn once, when complete. */
  private backfillPending(now: number): boolean {
    const b = this.backfill;
    return !!b && b.part + 1 < b.parts && now - b.at < 2000;
  }

  private redraw(now: number): void {
    this.syncCharts(now);
    this.chartsNote.hidden = this.charts.size > 0;
    this.charts.draw(this.windowEnd(), this.interval());
    const newest = this.store.newest();
    if (newest) {
      this.stats.update(newest.metrics);
      this.cores.update(newest.metrics);
      this.filesystems.update(newest.metrics);
    }
    this.top.update(this.store.top?.top ?? []);
    this.root.dataset.points = String(this.store.length);
  }

  /** Builds or rebuilds charts when new metrics appear (or the busiest interfaces change). */
  private syncCharts(now: number): void {
    if (this.specsRev === this.store.namesRev && now - this.specsAt < 30_000) return;
    this.specsRev = this.store.namesRev;
    this.specsAt = now;
    this.charts.sync(chartSpecs(this.store, { cores: this.hooks.agent(this.host)?.snapshot?.facts.cores }));
  }

  private updateText(now: number): void {
    const [state, text] = this.computeState(now);
    this.state = state;
    this.chartsNote.hidden = this.charts.size > 0;
    if (this.charts.size === 0) {
      const b = this.backfill;
      const note = b && b.part + 1 < b.parts ? `Loading the last 5 minutes… part ${b.part + 1} of ${b.parts}` : text === 'Live' ? 'Drawing…' : `${text}`;
      setText(this.chartsNote, note);
    }
    this.root.dataset.state = state;
    setText(this.stateEl, text);
    this.stateEl.className = `session-state s-${state}`;
    this.syncButtons();
    const parts: string[] = [];
    const s = this.session;
    if (s && s.leaseUntil && (state === 'live' || state === 'stalled' || state === 'history' || state === 'starting')) {
      const left = s.leaseUntil - this.serverNow();
      parts.push(left > 0 ? `lease ${fmt.duration(left)}` : 'lease expired');
    }
    const n = this.store.length;
    const first = this.store.samples[0];
    const last = this.store.newest();
    parts.push(`${n} point${n === 1 ? '' : 's'}`);
    if (first && last) parts.push(`${fmt.duration(last.ts - first.ts + 1000)} of history`);
    if (last) parts.push(`last ${fmt.clockTime(last.ts)}`);
    const facts = this.hooks.agent(this.host)?.snapshot?.facts;
    if (facts) parts.push(`${facts.cores} cores · ${fmt.bytes(facts.mem_total_bytes)}`);
    const meta = parts.join(' · ');
    setText(this.metaEl, meta);
  }
}

function cssId(host: string): string {
  return host.replace(/[^A-Za-z0-9_-]/g, '_');
}
