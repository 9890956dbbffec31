// The names Sonde speaks on its own channels and the close codes this page acts on, in one
// module. They mirror protocol/src/sonde.rs and protocol/src/close.rs, which
// web/test/names.test.ts reads to check that they still agree.

/** Prefix of a host's channel; the host name follows. */
export const HOST_CHANNEL_PREFIX = 'private-sonde-host.';
/** The channel dashboards follow the agent inventory on. */
export const INVENTORY_CHANNEL = 'private-sonde-inventory';
/** The channel the relay publishes its own state on while an operator watches. */
export const RELAY_CHANNEL = 'private-sonde-relay';

/** Relay → agent (and viewers): a session directive. */
export const EVENT_SESSION = 'sonde:session';
/** Agent → viewers: part of the host's recent history. */
export const EVENT_BACKFILL = 'client-sonde-backfill';
/** Agent → viewers: one live sample. */
export const EVENT_SAMPLE = 'client-sonde-sample';
/** Relay → dashboards: a page of the inventory or the agents that changed. */
export const EVENT_INVENTORY = 'sonde:inventory';
/** Relay → operators: one node's state, once a second. */
export const EVENT_RELAY = 'sonde:relay';

/** Pusher's own events a channel reports its subscription with. */
export const SUBSCRIPTION_SUCCEEDED = 'pusher:subscription_succeeded';
export const SUBSCRIPTION_ERROR = 'pusher:subscription_error';

export function hostChannel(host: string): string {
  return `${HOST_CHANNEL_PREFIX}${host}`;
}

/** Pusher close codes the page names (the relay sends every one of protocol/src/close.rs). */
export const CLOSE = {
  /** No app with this key. */
  UnknownApp: 4001,
} as const;

/** 4000-4099: refusals pusher-js does not retry; the key or token must change. */
export function isFinalRefusal(code: number | null): boolean {
  return code !== null && code >= 4000 && code < 4100;
}
