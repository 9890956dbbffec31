// The host list: a filterable, sortable, virtualised list. Only the rows in view exist in the
// DOM; rows are keyed by host and rewritten only when their agent changed; all DOM work is
// batched into one animation frame. Ten thousand hosts cost the same as fifty.

import * as fmt from './format';
import type { Agent, Change, Inventory } from './inventory';
import { el, setBar, setText } from './dom';

const ROW_H = 48;
const OVERSCAN = 8;

type SortKey = 'name' | 'cpu' | 'load' | 'mem' | 'offline';

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

const SORTS: Record<SortKey, [string, (a: Agent, b: Agent) => number]> = {
  name: ['Name', (a, b) => collator.compare(a.host, b.host)],
  cpu: ['CPU, busiest first', (a, b) => (b.snapshot?.summary.cpu_pct ?? -1) - (a.snapshot?.summary.cpu_pct ?? -1)],
  load: ['Load, highest first', (a, b) => (b.snapshot?.summary.load1 ?? -1) - (a.snapshot?.summary.load1 ?? -1)],
  mem: ['Memory, fullest first', (a, b) => (b.snapshot?.summary.mem_used_pct ?? -1) - (a.snapshot?.summary.mem_used_pct ?? -1)],
  offline: ['Offline first', (a, b) => Number(a.online) - Number(b.online)],
};

interface Row {
  li: HTMLLIElement;
  host: string;
  rev: number;
  index: number;
  open: boolean;
  name: HTMLElement;
  meta: HTMLElement;
  cpu: HTMLElement;
  cpuBar: HTMLElement;
  load: HTMLElement;
  mem: HTMLElement;
  memBar: HTMLElement;
  seen: HTMLElement;
  button: HTMLButtonElement;
  dot: HTMLElement;
}

export interface HostListHooks {
  realtime(host: string): void;
  isOpen(host: string): boolean;
}

export class HostList {
  readonly root: HTMLElement;
  private filterInput: HTMLInputElement;
  private sortSelect: HTMLSelectElement;
  private count: HTMLElement;
  private scroller: HTMLElement;
  private list: HTMLUListElement;
  private empty: HTMLElement;
  /** Hosts shown, in order. Agents are looked up for the rows in view only. */
  private view: string[] = [];
  private rows = new Map<string, Row>();
  private spare: Row[] = [];
  private frame = 0;
  private needView = true;
  private forceRows = false;
  private sort: SortKey = 'name';
  private filter = '';
  private blocked: string | null = null;
  private resizer = new ResizeObserver(() => this.schedule());
  private ticker: ReturnType<typeof setInterval>;

  constructor(
    private inventory: Inventory,
    private hooks: HostListHooks,
  ) {
    this.filterInput = el('input', {
      type: 'search',
      class: 'filter',
      placeholder: 'Filter hosts',
      'aria-label': 'Filter hosts',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    this.sortSelect = el('select', { class: 'sort', 'aria-label': 'Sort hosts' });
    for (const [key, [label]] of Object.entries(SORTS)) this.sortSelect.append(el('option', { value: key }, label));
    this.count = el('div', { class: 'hosts-count', 'aria-live': 'polite' });
    this.list = el('ul', { class: 'hosts-list', 'aria-label': 'Hosts' });
    this.empty = el('p', { class: 'hosts-empty' }, 'Waiting for the host inventory…');
    this.scroller = el('div', { class: 'hosts-scroll' }, this.list, this.empty);
    const cols = el(
      'div',
      { class: 'hosts-cols', 'aria-hidden': 'true' },
      el('span', { class: 'c-name' }, 'Host'),
      el('span', { class: 'c-cpu' }, 'CPU'),
      el('span', { class: 'c-load' }, 'Load'),
      el('span', { class: 'c-mem' }, 'Mem'),
      el('span', { class: 'c-seen' }, 'Status'),
      el('span', { class: 'c-act' }),
    );
    this.root = el(
      'section',
      { class: 'hosts', 'aria-label': 'Hosts' },
      el('div', { class: 'hosts-head' }, this.filterInput, this.sortSelect),
      this.count,
      cols,
      this.scroller,
    );

    this.filterInput.addEventListener('input', () => {
      this.filter = this.filterInput.value.trim().toLowerCase();
      this.scroller.scrollTop = 0;
      this.invalidate(true);
    });
    this.filterInput.addEventListener('keydown', (e) => {
      // Enter opens the first match: type a host name, press Enter, watch.
      if (e.key === 'Enter' && this.view.length > 0) {
        e.preventDefault();
        this.hooks.realtime(this.view[0]);
      }
    });
    this.sortSelect.addEventListener('change', () => {
      this.sort = this.sortSelect.value as SortKey;
      this.invalidate(true);
    });
    this.scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.list.addEventListener('click', (e) => {
      const button = (e.target as HTMLElement).closest('button');
      const host = button?.closest('li')?.dataset.host;
      if (host) this.hooks.realtime(host);
    });
    this.resizer.observe(this.scroller);
    inventory.onChange((c) => this.changed(c));
    // Relative times ("seen 5m ago") move on their own.
    this.ticker = setInterval(() => {
      this.forceRows = true;
      this.schedule();
    }, 1000);
  }

  destroy(): void {
    clearInterval(this.ticker);
    this.resizer.disconnect();
    cancelAnimationFrame(this.frame);
  }

  focusFilter(): void {
    this.filterInput.focus();
    this.filterInput.select();
  }

  /** Puts focus back on a host's button (after its panel closed), or on the filter. */
  focusHost(host: string): void {
    const button = this.rows.get(host)?.button;
    if (button) button.focus({ preventScroll: true });
    else this.filterInput.focus();
  }

  /** Re-labels a host's Realtime button after a panel opened or closed. */
  refresh(host: string): void {
    const row = this.rows.get(host);
    if (row) row.rev = -1;
    this.schedule();
  }

  /** Says why the list is empty when the relay refused access (null: access again). */
  setBlocked(reason: string | null): void {
    this.blocked = reason;
    this.schedule();
  }

  /** Rows currently in the DOM (for tests: stays small whatever the number of hosts). */
  renderedRows(): number {
    return this.list.childElementCount;
  }

  private changed(c: Change): void {
    // Order only moves when membership changes or the sort looks at the changed values.
    if (c.membership || this.sort !== 'name') this.needView = true;
    this.schedule();
  }

  private invalidate(view: boolean): void {
    if (view) this.needView = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private rebuildView(): void {
    const f = this.filter;
    const out: Agent[] = [];
    for (const a of this.inventory.agents.values()) {
      if (f && !a.host.toLowerCase().includes(f)) continue;
      out.push(a);
    }
    const cmp = SORTS[this.sort][1];
    out.sort((a, b) => cmp(a, b) || collator.compare(a.host, b.host));
    this.view = out.map((a) => a.host);
  }

  private render(): void {
    const inv = this.inventory;
    if (this.needView) {
      this.rebuildView();
      this.needView = false;
    }
    const total = inv.agents.size;
    const shown = this.view.length;
    const countText = `${total} host${total === 1 ? '' : 's'} · ${inv.online} online${shown !== total ? ` · ${shown} shown` : ''}`;
    setText(this.count, countText);
    this.empty.hidden = shown > 0;
    if (shown === 0) {
      this.empty.textContent = this.blocked ?? (total === 0 ? 'No agents have connected yet.' : 'No host matches the filter.');
    }
    this.list.style.height = `${shown * ROW_H}px`;

    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(shown, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const wanted = new Set<string>();
    for (let i = first; i < last; i++) wanted.add(this.view[i]);
    for (const [host, row] of this.rows) {
      if (wanted.has(host)) continue;
      this.rows.delete(host);
      row.li.remove();
      this.spare.push(row);
    }
    const now = Date.now();
    for (let i = first; i < last; i++) {
      const a = inv.agents.get(this.view[i]);
      if (!a) continue;
      let row = this.rows.get(a.host);
      if (!row) {
        row = this.spare.pop() ?? this.makeRow();
        row.host = a.host;
        row.rev = -1;
        row.index = -1;
        row.li.dataset.host = a.host;
        this.rows.set(a.host, row);
        this.list.append(row.li);
      }
      if (row.index !== i) {
        row.index = i;
        row.li.style.transform = `translateY(${i * ROW_H}px)`;
        row.li.setAttribute('aria-posinset', String(i + 1));
      }
      row.li.setAttribute('aria-setsize', String(shown));
      const open = this.hooks.isOpen(a.host);
      if (row.rev !== a.rev || row.open !== open) this.fill(row, a, open);
      if (this.forceRows || row.rev !== a.rev) setText(row.seen, statusText(a, now));
      row.rev = a.rev;
    }
    this.forceRows = false;
  }

  private makeRow(): Row {
    const dot = el('span', { class: 'dot' });
    const name = el('span', { class: 'name' });
    const meta = el('span', { class: 'meta' });
    const cpuBar = el('span', { class: 'bar-fill' });
    const cpu = el('span', { class: 'val' });
    const memBar = el('span', { class: 'bar-fill' });
    const mem = el('span', { class: 'val' });
    const load = el('span', { class: 'c-load val' });
    const seen = el('span', { class: 'c-seen' });
    const button = el('button', { type: 'button', class: 'btn btn-rt' }, 'Realtime');
    const li = el(
      'li',
      { class: 'host' },
      dot,
      el('span', { class: 'c-name' }, name, meta),
      el('span', { class: 'c-cpu' }, cpu, el('span', { class: 'bar' }, cpuBar)),
      load,
      el('span', { class: 'c-mem' }, mem, el('span', { class: 'bar' }, memBar)),
      seen,
      el('span', { class: 'c-act' }, button),
    );
    return { li, host: '', rev: -1, index: -1, open: false, name, meta, cpu, cpuBar, load, mem, memBar, seen, button, dot };
  }

  private fill(row: Row, a: Agent, open: boolean): void {
    row.open = open;
    row.li.classList.toggle('offline', !a.online);
    row.li.classList.toggle('open', open);
    row.dot.title = a.online ? 'online' : 'offline';
    setText(row.name, a.host);
    const s = a.snapshot;
    setText(row.meta, s ? `${shortOs(s.facts.os)} · ${s.facts.cores} cores · ${fmt.bytes(s.facts.mem_total_bytes)}` : a.online ? 'waiting for first snapshot' : '');
    setText(row.cpu, s ? fmt.pct(s.summary.cpu_pct) : '–');
    setText(row.load, s ? fmt.num(s.summary.load1) : '–');
    setText(row.mem, s ? fmt.pct(s.summary.mem_used_pct) : '–');
    setBar(row.cpuBar, s?.summary.cpu_pct, 70);
    setBar(row.memBar, s?.summary.mem_used_pct, 70);
    setText(row.button, open ? 'Watching' : 'Realtime');
    row.button.setAttribute('aria-pressed', String(open));
    row.button.setAttribute('aria-label', `${open ? 'Show' : 'Watch'} ${a.host} in realtime`);
  }
}

function statusText(a: Agent, now: number): string {
  return a.online ? `up ${fmt.duration(now - a.since)}` : `seen ${fmt.ago(a.last_seen, now)}`;
}

/** "Debian GNU/Linux 12 (bookworm)" → "Debian 12". */
function shortOs(os: string): string {
  const m = /^(\w+)[^\d]*([\d.]+)?/.exec(os);
  return m ? [m[1], m[2]].filter(Boolean).join(' ') : os;
}
