// Which relay the dashboard connects to. The relay that served the page is trusted: it already
// runs this code. Any other relay, named by a link's `ws=host:port`, would receive the viewer
// token, so the page asks the user first and remembers a confirmed relay for this tab only.
// Pure functions of their arguments (no DOM, no storage) so they can be tested in node.

/** A relay's address as it appears in a URL: `host` (IPv6 in brackets) and a port, 0 = default. */
export interface Endpoint {
  host: string;
  port: number;
}

/** Where the websocket goes: the page's own origin, or a relay the user confirmed. */
export type Target = { kind: 'own' } | { kind: 'other'; relay: Endpoint };

export const OWN: Target = { kind: 'own' };

/** The parts of `location` the choice depends on. */
export interface PageOrigin {
  protocol: string;
  hostname: string;
  port: string;
}

/** What to do with the relay named by a link (`requested`) and the one confirmed earlier. */
export type Decision =
  | { kind: 'own'; forget: boolean }
  | { kind: 'remembered'; relay: Endpoint }
  | { kind: 'ask'; relay: Endpoint }
  | { kind: 'invalid'; text: string };

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/;
const IPV6 = /^\[[0-9a-f:.]{2,45}\]$/;

/**
 * Parses `host`, `host:port` or `[v6]:port`. Anything else (a scheme, a path, user info,
 * non-ASCII letters that could pass for others) is refused: the user must see exactly the host
 * the token would go to.
 */
export function parseRelay(text: string): Endpoint | null {
  const m = /^(\[[^\]]*\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) return null;
  const host = m[1].toLowerCase();
  if (!HOSTNAME.test(host) && !IPV6.test(host)) return null;
  const port = m[2] === undefined ? 0 : Number(m[2]);
  if (m[2] !== undefined && (port < 1 || port > 65535)) return null;
  return { host: host.replace(/\.$/, ''), port };
}

/** `host:port` as shown to the user and kept in storage. */
export function label(e: Endpoint): string {
  return e.port ? `${e.host}:${e.port}` : e.host;
}

function defaultPort(page: PageOrigin): number {
  return page.protocol === 'https:' ? 443 : 80;
}

/** The page's own `host:port`, with the scheme's default port filled in. */
export function ownLabel(page: PageOrigin): string {
  return label({ host: page.hostname.toLowerCase(), port: Number(page.port) || defaultPort(page) });
}

/** Whether `e` is the host and port the page came from (the same relay, nothing to ask). */
export function isOwn(e: Endpoint, page: PageOrigin): boolean {
  const port = e.port || defaultPort(page);
  return e.host === page.hostname.toLowerCase() && port === (Number(page.port) || defaultPort(page));
}

/**
 * A link's `ws=` replaces whatever the tab chose before: its own host means this relay, the
 * relay confirmed earlier in this tab needs no second question, any other asks. Without
 * `ws=`, a relay confirmed earlier in this tab stays in use (a reload, a new token).
 */
export function decide(requested: string | undefined, remembered: string | undefined, page: PageOrigin): Decision {
  if (requested === undefined) {
    const relay = remembered === undefined ? null : parseRelay(remembered);
    if (relay && !isOwn(relay, page)) return { kind: 'remembered', relay };
    return { kind: 'own', forget: remembered !== undefined };
  }
  const relay = parseRelay(requested);
  if (!relay) return { kind: 'invalid', text: requested };
  if (isOwn(relay, page)) return { kind: 'own', forget: true };
  const before = remembered === undefined ? null : parseRelay(remembered);
  if (before && label(before) === label(relay)) return { kind: 'remembered', relay };
  return { kind: 'ask', relay };
}
