// The filesystems of a host (`fs.{mount}.*`): how full each one is, fullest first.

import { el, setBar, setText } from './dom';
import * as fmt from './format';

interface Row {
  tr: HTMLTableRowElement;
  used: HTMLElement;
  bar: HTMLElement;
  avail: HTMLElement;
  size: HTMLElement;
}

export class FilesystemTable {
  readonly root: HTMLElement;
  private body: HTMLTableSectionElement;
  private rows = new Map<string, Row>();
  private order = '';

  constructor(host: string) {
    this.body = el('tbody');
    this.root = el(
      'section',
      { class: 'fs', 'aria-label': `Filesystems on ${host}`, hidden: '' },
      el('h3', {}, 'Filesystems'),
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            el('th', { scope: 'col' }, 'Mount'),
            el('th', { scope: 'col', class: 'fs-used' }, 'Used'),
            el('th', { scope: 'col', class: 'num' }, 'Free'),
            el('th', { scope: 'col', class: 'num' }, 'Size'),
          ),
        ),
        this.body,
      ),
    );
  }

  update(metrics: Record<string, number>): void {
    const mounts = new Map<string, Record<string, number>>();
    for (const name in metrics) {
      if (!name.startsWith('fs.')) continue;
      const dot = name.lastIndexOf('.');
      const mount = name.slice(3, dot);
      const fields = mounts.get(mount) ?? {};
      fields[name.slice(dot + 1)] = metrics[name];
      mounts.set(mount, fields);
    }
    this.root.hidden = mounts.size === 0;
    const sorted = [...mounts.entries()].sort((a, b) => (b[1].used_pct ?? 0) - (a[1].used_pct ?? 0) || a[0].localeCompare(b[0]));
    const order = sorted.map(([m]) => m).join('\n');
    if (order !== this.order) {
      this.order = order;
      for (const [mount, row] of this.rows) if (!mounts.has(mount)) row.tr.remove();
      for (const [mount] of sorted) this.body.append(this.row(mount).tr);
    }
    for (const [mount, f] of sorted) {
      const row = this.row(mount);
      setText(row.used, fmt.pct(f.used_pct));
      setBar(row.bar, f.used_pct, 80);
      setText(row.avail, fmt.bytes(f.avail_bytes));
      setText(row.size, fmt.bytes(f.size_bytes));
    }
  }

  private row(mount: string): Row {
    let row = this.rows.get(mount);
    if (!row) {
      const used = el('span', { class: 'fs-pct' });
      const bar = el('span', { class: 'bar-fill' });
      const avail = el('td', { class: 'num' });
      const size = el('td', { class: 'num' });
      const tr = el('tr', {}, el('td', { class: 'fs-mount', title: mount }, mount), el('td', { class: 'fs-used' }, used, el('span', { class: 'bar' }, bar)), avail, size);
      row = { tr, used, bar, avail, size };
      this.rows.set(mount, row);
    }
    return row;
  }
}
