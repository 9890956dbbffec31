// The viewer's credentials: app key and viewer JWT. They arrive in the URL fragment (never
// sent to a server, never logged), are kept in sessionStorage for this tab only, and the
// fragment is wiped from the address bar at once so it does not linger in history or
// screenshots. A link may also name another relay (`ws=host:port`); that is only a request,
// which the user must confirm before anything is sent there (see origin.ts).

export interface Credentials {
  key: string;
  token: string;
}

/** What the page was opened with: credentials, and the relay a link asks for, unconfirmed. */
export interface Opened {
  creds: Credentials | null;
  requestedRelay?: string;
}

const STORE = 'sonde.credentials';
/** The other relay the user confirmed in this tab, as `host:port`. */
const RELAY_STORE = 'sonde.relay';

/** Reads credentials from the fragment (then strips it) or from this tab's storage. */
export function load(): Opened {
  let requestedRelay: string | undefined;
  if (location.hash.length > 1) {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    // Strip the fragment whatever it held: it may be a half-pasted token.
    history.replaceState(null, '', location.pathname + location.search);
    requestedRelay = params.get('ws')?.trim() || undefined;
    const key = params.get('key')?.trim();
    const token = params.get('token')?.trim();
    if (key && token) {
      save({ key, token });
      return { creds: { key, token }, requestedRelay };
    }
  }
  try {
    const raw = sessionStorage.getItem(STORE);
    const c = raw ? (JSON.parse(raw) as Partial<Credentials>) : null;
    const creds = c && typeof c.key === 'string' && typeof c.token === 'string' && c.key && c.token ? { key: c.key, token: c.token } : null;
    return { creds, requestedRelay };
  } catch {
    return { creds: null, requestedRelay };
  }
}

/** The other relay confirmed earlier in this tab, if any. */
export function rememberedRelay(): string | undefined {
  try {
    return sessionStorage.getItem(RELAY_STORE) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Remembers a confirmed relay for this tab (sessionStorage: never shared with other tabs). */
export function rememberRelay(hostPort: string): void {
  try {
    sessionStorage.setItem(RELAY_STORE, hostPort);
  } catch {
    // Storage disabled: the choice lasts as long as the page.
  }
}

export function forgetRelay(): void {
  try {
    sessionStorage.removeItem(RELAY_STORE);
  } catch {
    // Nothing stored.
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

/** The claims of a JWT when its payload is a JSON object (the signature is the relay's business). */
function claims(token: string): Record<string, unknown> | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const parsed: unknown = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The `exp` claim of a JWT, in ms, if it has one. */
export function tokenExpiry(token: string): number | null {
  const exp = claims(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : null;
}

/** The `role` claim of a JWT: it only picks the view, the relay decides what the token may do. */
export function tokenRole(token: string): string | null {
  const role = claims(token)?.role;
  return typeof role === 'string' ? role : null;
}
