// The agent inventory as the relay publishes it on `private-sonde-inventory`.
//
// A `full` message (one or several pages) replaces the list; other messages update only the
// agents they name. The relay marks the last page of a full list (`last`), sending pages as
// the socket takes them; agents the list did not name are dropped then. A relay that does not
// mark it is recognised by its pages stopping for a moment.

export interface Snapshot {
  install_id: string;
  host: string | null;
  facts: { os: string; kernel: string; cores: number; mem_total_bytes: number; agent_version: string };
  summary: { cpu_pct: number; load1: number; mem_used_pct: number };
  custom?: Record<string, number>;
}

export interface AgentEntry {
  host: string;
  online: boolean;
  last_seen: number;
  since: number;
  snapshot: Snapshot | null;
}

export interface InventoryMessage {
  full: boolean;
  /** On the last page of a full list. */
  last?: boolean;
  agents: AgentEntry[];
}

export interface Agent extends AgentEntry {
  /** Bumped on every change, so views redraw a row only when it changed. */
  rev: number;
  /** The full list this agent was last seen in (or updated during). */
  gen: number;
}

export interface Change {
  /** Hosts whose entry changed. */
  hosts: Set<string>;
  /** Whether hosts were added or removed. */
  membership: boolean;
}

const SETTLE_MS = 1500;

export class Inventory {
  readonly agents = new Map<string, Agent>();
  private gen = 0;
  private collecting = false;
  private settleTimer: ReturnType<typeof setTimeout> | undefined;
  private rev = 0;
  /** The relay marks last pages: no need to guess the end of a list from a pause. */
  private marksLast = false;
  private listeners: ((c: Change) => void)[] = [];
  online = 0;

  onChange(l: (c: Change) => void): void {
    this.listeners.push(l);
  }

  apply(msg: InventoryMessage): void {
    const change: Change = { hosts: new Set(), membership: false };
    if (msg.full) {
      if (!this.collecting) {
        this.gen++;
        this.collecting = true;
      }
      clearTimeout(this.settleTimer);
      if (msg.last === true) this.marksLast = true;
      else if (!this.marksLast) this.settleTimer = setTimeout(() => this.settle(), SETTLE_MS);
    }
    for (const e of Array.isArray(msg.agents) ? msg.agents : []) {
      if (!e || typeof e.host !== 'string') continue;
      const prev = this.agents.get(e.host);
      if (!prev) change.membership = true;
      else if (prev.online) this.online--;
      const a: Agent = { ...e, snapshot: e.snapshot ?? null, rev: ++this.rev, gen: this.gen };
      if (a.online) this.online++;
      this.agents.set(e.host, a);
      change.hosts.add(e.host);
    }
    this.emit(change);
    if (msg.full && msg.last === true) this.settle();
  }

  /** Drops agents that the last full list did not name. */
  private settle(): void {
    this.collecting = false;
    const change: Change = { hosts: new Set(), membership: false };
    for (const [host, a] of this.agents) {
      if (a.gen === this.gen) continue;
      if (a.online) this.online--;
      this.agents.delete(host);
      change.hosts.add(host);
      change.membership = true;
    }
    if (change.membership) this.emit(change);
  }

  private emit(c: Change): void {
    if (c.hosts.size === 0 && !c.membership) return;
    for (const l of this.listeners) l(c);
  }
}
