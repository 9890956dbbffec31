// Human-readable numbers for an operator: binary byte units, percents, rates, ages.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Three significant digits at most, never exponent notation. */
function sig3(v: number): string {
  const a = Math.abs(v);
  if (a >= 100 || Number.isInteger(v)) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function bytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '–';
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : sig3(v)} ${BYTE_UNITS[i]}`;
}

export function bytesPerSec(n: number | null | undefined): string {
  return n == null || !Number.isFinite(n) ? '–' : `${bytes(n)}/s`;
}

export function pct(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '–';
  return `${Math.abs(n) < 10 && n !== 0 ? n.toFixed(1) : Math.round(n)}%`;
}

/** Counts and plain values: 0.42, 12.5, 1.2k, 3.4M. */
export function num(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return `${sig3(n / 1e9)}G`;
  if (a >= 1e6) return `${sig3(n / 1e6)}M`;
  if (a >= 1e4) return `${sig3(n / 1e3)}k`;
  if (a >= 100 || Number.isInteger(n)) return Math.round(n).toString();
  return n.toFixed(2).replace(/\.?0+$/, '');
}

export function perSec(n: number | null | undefined): string {
  return n == null || !Number.isFinite(n) ? '–' : `${num(n)}/s`;
}

/** "12s", "4m 05s", "3h 12m", "2d 4h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** "just now", "12s ago", "5m ago", "3h ago", "2d ago". */
export function ago(ms: number, now: number): string {
  const s = Math.floor((now - ms) / 1000);
  if (s < 3) return 'just now';
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

export function clockTime(ms: number): string {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export type Unit = 'pct' | 'bytes' | 'bytes_ps' | 'ps' | 'plain';

/** A metric's unit from its name's suffix, as docs/protocol.md defines them. */
export function unitOf(name: string): Unit {
  if (name.endsWith('_bytes_ps')) return 'bytes_ps';
  if (name.endsWith('_pct')) return 'pct';
  if (name.endsWith('_bytes')) return 'bytes';
  if (name.endsWith('_ps')) return 'ps';
  return 'plain';
}

export function formatter(unit: Unit): (n: number | null | undefined) => string {
  switch (unit) {
    case 'pct':
      return pct;
    case 'bytes':
      return bytes;
    case 'bytes_ps':
      return bytesPerSec;
    case 'ps':
      return perSec;
    case 'plain':
      return num;
  }
}
