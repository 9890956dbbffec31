// The numbers at the top of a host panel, and its top-processes table.

import { el, setText } from './dom';
import * as fmt from './format';
import type { TopProcess } from './store';

const TOP_ROWS = 10;

/** The newest values at a glance: CPU, load, memory, network, disks. */
export class StatsStrip {
  readonly root: HTMLElement;
  private cells: Record<string, [HTMLElement, HTMLElement]> = {};

  constructor() {
    this.root = el('div', { class: 'stats' });
    for (const [id, label] of [
      ['cpu', 'CPU busy'],
      ['load', 'Load 1m'],
      ['mem', 'Memory'],
      ['net', 'Net in'],
      ['disk', 'Disk read'],
    ]) {
      const value = el('span', { class: 'stat-value' }, '–');
      const sub = el('span', { class: 'stat-sub' });
      this.root.append(el('div', { class: 'stat', 'data-stat': id }, el('span', { class: 'stat-label' }, label), value, sub));
      this.cells[id] = [value, sub];
    }
  }

  update(m: Record<string, number>): void {
    const sum = (prefix: string, suffix: string) => {
      let total: number | null = null;
      for (const k in m) if (k.startsWith(prefix) && k.endsWith(suffix)) total = (total ?? 0) + m[k];
      return total;
    };
    const idle = m['cpu.idle_pct'];
    this.cell('cpu', idle == null ? '–' : fmt.pct(100 - idle), m['cpu.iowait_pct'] != null ? `iowait ${fmt.pct(m['cpu.iowait_pct'])}` : '');
    this.cell('load', fmt.num(m['system.load1']), m['system.load5'] != null ? `5m ${fmt.num(m['system.load5'])} · 15m ${fmt.num(m['system.load15'])}` : '');
    this.cell('mem', fmt.pct(m['mem.used_pct']), m['mem.used_bytes'] != null ? `${fmt.bytes(m['mem.used_bytes'])} of ${fmt.bytes(m['mem.total_bytes'])}` : '');
    this.cell('net', fmt.bytesPerSec(sum('net.', '.rx_bytes_ps')), `out ${fmt.bytesPerSec(sum('net.', '.tx_bytes_ps'))}`);
    this.cell('disk', fmt.bytesPerSec(sum('disk.', '.read_bytes_ps')), `write ${fmt.bytesPerSec(sum('disk.', '.write_bytes_ps'))}`);
  }

  private cell(id: string, value: string, sub: string): void {
    const [v, s] = this.cells[id];
    setText(v, value);
    setText(s, sub);
  }
}

/** The busiest processes of the newest sample that carried a list: ten fixed rows, rewritten in place. */
export class TopTable {
  readonly root: HTMLElement;
  private rows: [HTMLElement, HTMLElement, HTMLElement, HTMLElement, HTMLElement][] = [];
  private note: HTMLElement;

  constructor(host: string) {
    const body = el('tbody');
    for (let i = 0; i < TOP_ROWS; i++) {
      const pid = el('td', { class: 'num' });
      const name = el('td');
      const cpu = el('td', { class: 'num' });
      const mem = el('td', { class: 'num' });
      const tr = el('tr', { hidden: '' }, pid, name, cpu, mem);
      body.append(tr);
      this.rows.push([tr, pid, name, cpu, mem]);
    }
    this.note = el('p', { class: 'top-note' }, 'No process list yet.');
    this.root = el(
      'section',
      { class: 'top', 'aria-label': `Top processes on ${host}` },
      el('h3', {}, 'Top processes'),
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            el('th', { class: 'num', scope: 'col' }, 'PID'),
            el('th', { scope: 'col' }, 'Process'),
            el('th', { class: 'num', scope: 'col' }, 'CPU'),
            el('th', { class: 'num', scope: 'col' }, 'Memory'),
          ),
        ),
        body,
      ),
      this.note,
    );
  }

  update(top: TopProcess[]): void {
    const procs = [...top].sort((a, b) => b.cpu_pct - a.cpu_pct || b.mem_bytes - a.mem_bytes).slice(0, TOP_ROWS);
    this.note.hidden = procs.length > 0;
    for (let i = 0; i < TOP_ROWS; i++) {
      const [tr, pid, name, cpu, mem] = this.rows[i];
      const p = procs[i];
      tr.hidden = !p;
      if (!p) continue;
      setText(pid, String(p.pid));
      setText(name, p.name);
      setText(cpu, fmt.pct(p.cpu_pct));
      setText(mem, fmt.bytes(p.mem_bytes));
    }
  }
}

/** One small bar per core (busy = 100 − idle), to spot a single pegged core. */
export class CoreBars {
  readonly root: HTMLElement;
  private bars: HTMLElement[] = [];
  private strip: HTMLElement;

  constructor() {
    this.strip = el('div', { class: 'cores-strip', role: 'img' });
    this.root = el('div', { class: 'cores', hidden: '' }, el('span', { class: 'cores-label' }, 'Cores'), this.strip);
  }

  update(m: Record<string, number>): void {
    const busy: number[] = [];
    for (let n = 0; ; n++) {
      const idle = m[`cpu.${n}.idle_pct`];
      if (idle == null) break;
      busy.push(Math.max(0, Math.min(100, 100 - idle)));
    }
    this.root.hidden = busy.length === 0;
    while (this.bars.length < busy.length) {
      const bar = el('span', { class: 'core' }, el('span', { class: 'core-fill' }));
      this.strip.append(bar);
      this.bars.push(bar);
    }
    while (this.bars.length > busy.length) this.bars.pop()!.remove();
    busy.forEach((b, n) => {
      const bar = this.bars[n];
      const fill = bar.firstElementChild as HTMLElement;
      fill.style.height = `${b}%`;
      fill.classList.toggle('warm', b >= 70 && b < 90);
      fill.classList.toggle('hot', b >= 90);
      bar.title = `core ${n}: ${fmt.pct(b)} busy`;
    });
    const hottest = busy.length ? Math.max(...busy) : 0;
    this.strip.setAttribute('aria-label', `${busy.length} cores, busiest ${fmt.pct(hottest)}`);
  }
}
