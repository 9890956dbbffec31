// The viewer's credentials: app key and viewer JWT. They arrive in the URL fragment (never
// sent to a server, never logged), are kept in sessionStorage for this tab only, and the
// fragment is wiped from the address bar at once so it does not linger in history or
// screenshots.

export interface Credentials {
  key: string;
  token: string;
  /** Optional `host:port` of the websocket endpoint, when the page is served elsewhere. */
  ws?: string;
}

const STORE = 'sonde.credentials';
const WS_STORE = 'sonde.ws';

function parseFragment(hash: string): Credentials | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const key = params.get('key')?.trim();
  const token = params.get('token')?.trim();
  const ws = params.get('ws')?.trim() || undefined;
  if (ws) {
    try {
      sessionStorage.setItem(WS_STORE, ws);
    } catch {
      // Storage disabled: the override lasts as long as the page.
    }
  }
  return key && token ? { key, token, ws } : null;
}

/** Reads credentials from the fragment (then strips it) or from this tab's storage. */
export function load(): Credentials | null {
  if (location.hash.length > 1) {
    const fromHash = parseFragment(location.hash);
    // Strip the fragment whatever it held: it may be a half-pasted token.
    history.replaceState(null, '', location.pathname + location.search);
    if (fromHash) {
      save(fromHash);
      return fromHash;
    }
  }
  try {
    const raw = sessionStorage.getItem(STORE);
    if (!raw) return null;
    const c = JSON.parse(raw) as Partial<Credentials>;
    return c.key && c.token ? { key: c.key, token: c.token, ws: c.ws } : null;
  } catch {
    return null;
  }
}

/** A `ws=host:port` given in the fragment without credentials (a page served elsewhere). */
export function wsOverride(): string | undefined {
  try {
    return sessionStorage.getItem(WS_STORE) || undefined;
  } catch {
    return undefined;
  }
}

export function save(c: Credentials): void {
  try {
    sessionStorage.setItem(STORE, JSON.stringify(c));
  } catch {
    // Storage may be disabled; the credentials then last as long as the page.
  }
}

export function clear(): void {
  try {
    sessionStorage.removeItem(STORE);
  } catch {
    // Nothing stored.
  }
}

/** The `exp` claim of a JWT, in ms, if it has one (the signature is the relay's business). */
export function tokenExpiry(token: string): number | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}
