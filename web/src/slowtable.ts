// The flight recorder's latest entries (GET /debug/slow with the operator token), newest
// first, refreshed every few seconds while the relay page is open.

import { el } from './dom';
import * as fmt from './format';

const REFRESH_MS = 3000;

interface Entry {
  seq: number;
  at_ms: number;
  app: string | null;
  kind: string;
  [detail: string]: unknown;
}

/** The detail of an entry as one line: every field but the common ones. */
function detail(e: Entry): string {
  const skip = new Set(['seq', 'at_ms', 'app', 'kind']);
  return Object.entries(e)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
}

export class SlowTable {
  readonly root: HTMLElement;
  private body = el('tbody');
  private status = el('p', { class: 'relay-slow-status' }, 'Loading…');
  private timer = 0;
  private stopped = false;

  constructor(private url: string, private token: string) {
    const head = el('thead', {}, el('tr', {}, el('th', {}, 'When'), el('th', {}, 'App'), el('th', {}, 'Kind'), el('th', {}, 'Detail')));
    this.root = el('div', { class: 'relay-slow' }, this.status, el('table', { class: 'table relay-slow-table' }, head, this.body));
  }

  start(): void {
    void this.refresh();
    this.timer = window.setInterval(() => void this.refresh(), REFRESH_MS);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async refresh(): Promise<void> {
    try {
      const r = await fetch(this.url, { headers: { authorization: `Bearer ${this.token}` } });
      if (this.stopped) return;
      if (!r.ok) {
        this.status.textContent = `The relay answered ${r.status}: the recorder needs an operator token.`;
        return;
      }
      const body = (await r.json()) as { recording?: boolean; events?: Entry[] };
      this.render(body.events ?? [], body.recording !== false);
    } catch {
      if (!this.stopped) this.status.textContent = 'The relay did not answer; retrying.';
    }
  }

  private render(events: Entry[], recording: boolean): void {
    const now = Date.now();
    const rows = [...events].reverse().map((e) =>
      el(
        'tr',
        { 'data-kind': e.kind },
        el('td', { title: new Date(e.at_ms).toISOString() }, fmt.ago(e.at_ms, now)),
        el('td', {}, e.app ?? '–'),
        el('td', {}, e.kind.replace(/_/g, ' ')),
        el('td', { class: 'relay-slow-detail' }, detail(e)),
      ),
    );
    this.body.replaceChildren(...rows);
    this.status.textContent = !recording ? 'The flight recorder is off ([recorder] enabled = false).' : events.length ? `${events.length} latest events` : 'Nothing slow or failed recorded.';
  }
}
