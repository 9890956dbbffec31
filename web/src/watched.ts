// The hosts being watched: one live panel each, opened from the host list, laid out side by
// side, drawn by the page's render loop.

import { el } from './dom';
import type { Inventory } from './inventory';
import type { Relay } from './connection';
import { HostPanel } from './panel';

export interface WatchedHooks {
  /** A host's panel opened or closed (its row in the list shows it). */
  changed(host: string): void;
  /** A panel was closed by its own button (focus goes back to its row). */
  closed(host: string): void;
  /** The number of panels changed. */
  resized(count: number): void;
}

export class Watched {
  readonly root = el('main', { class: 'panels', 'aria-label': 'Watched hosts' });
  readonly panels = new Map<string, HostPanel>();
  private empty = el('p', { class: 'panels-empty' }, 'Press Realtime on a host to watch it live.');

  constructor(
    private relay: Relay,
    private inventory: Inventory,
    private hooks: WatchedHooks,
  ) {
    this.root.append(this.empty);
  }

  has(host: string): boolean {
    return this.panels.has(host);
  }

  /** Opens a panel for `host`, or brings its open one into view. */
  open(host: string): void {
    const existing = this.panels.get(host);
    if (existing) {
      existing.root.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      existing.root.focus({ preventScroll: true });
      return;
    }
    const panel = new HostPanel(host, this.relay, {
      agent: (h) => this.inventory.agents.get(h),
      closed: (h) => {
        this.panels.delete(h);
        this.hooks.changed(h);
        this.laidOut();
        this.hooks.closed(h);
      },
    });
    this.panels.set(host, panel);
    this.root.append(panel.root);
    panel.start();
    this.hooks.changed(host);
    this.laidOut();
  }

  laidOut(): void {
    this.empty.hidden = this.panels.size > 0;
    this.root.style.setProperty('--panels', String(Math.max(1, this.panels.size)));
    this.hooks.resized(this.panels.size);
  }

  frame(wall: number, slide: boolean): void {
    for (const p of this.panels.values()) p.frame(wall, slide);
  }

  closeAll(): void {
    for (const p of [...this.panels.values()]) p.close();
  }
}
