// One pusher-js connection to the relay that served this page, or to another relay the user
// confirmed (origin.ts). The viewer JWT is handed to pusher-js as the `auth` of every private
// subscription; the relay checks its capabilities.

import Pusher from 'pusher-js';
import type { Channel } from 'pusher-js';
import type { Credentials } from './credentials';
import { isFinalRefusal } from './names';
import type { Target } from './origin';

export type ConnState = 'initialized' | 'connecting' | 'connected' | 'unavailable' | 'failed' | 'disconnected';

/** A refusal the operator must act on (bad key, bad or expired token). */
export interface Refusal {
  code: number | null;
  message: string;
}

type Listener<T> = (value: T) => void;

export class Relay {
  readonly pusher: Pusher;
  private stateListeners: Listener<ConnState>[] = [];
  private refusalListeners: Listener<Refusal>[] = [];
  state: ConnState = 'initialized';
  /** The close code or error message of the last failure, for the status line. */
  lastError: Refusal | null = null;

  constructor(creds: Credentials, target: Target) {
    const other = target.kind === 'other' ? target.relay : null;
    const host = other ? other.host : location.hostname;
    const port = other ? other.port : Number(location.port) || 0;
    const token = creds.token;
    const options = {
      wsHost: host,
      // Behind a reverse proxy under a prefix (https://ops.example/sonde/), the websocket
      // lives under the same prefix.
      wsPath: other ? '' : location.pathname.replace(/\/[^/]*$/, ''),
      wsPort: port || 80,
      wssPort: port || 443,
      forceTLS: location.protocol === 'https:',
      enabledTransports: ['ws', 'wss'],
      cluster: 'local',
      disableStats: true,
      // Notice a silently dead connection within ~40 s rather than pusher-js's default 150 s.
      activityTimeout: 30_000,
      pongTimeout: 10_000,
      channelAuthorization: {
        endpoint: '',
        transport: 'ajax',
        customHandler: (_params: unknown, cb: (err: Error | null, data: { auth: string } | null) => void) =>
          cb(null, { auth: token }),
      },
    };
    this.pusher = new Pusher(creds.key, options as unknown as ConstructorParameters<typeof Pusher>[1]);
    this.pusher.connection.bind('state_change', (s: { current: ConnState }) => {
      this.state = s.current;
      if (s.current === 'connected') this.lastError = null;
      for (const l of this.stateListeners) l(s.current);
    });
    this.pusher.connection.bind('error', (err: unknown) => {
      const r = refusalOf(err);
      if (!r) return;
      this.lastError = r;
      if (isFinalRefusal(r.code)) for (const l of this.refusalListeners) l(r);
    });
  }

  /** Calls `l` on every state change; returns a function that stops calling it. */
  onState(l: Listener<ConnState>): () => void {
    this.stateListeners.push(l);
    return () => {
      this.stateListeners = this.stateListeners.filter((x) => x !== l);
    };
  }

  onRefusal(l: Listener<Refusal>): void {
    this.refusalListeners.push(l);
  }

  subscribe(name: string): Channel {
    return this.pusher.subscribe(name);
  }

  unsubscribe(name: string): void {
    this.pusher.unsubscribe(name);
  }

  reconnect(): void {
    this.pusher.connect();
  }

  disconnect(): void {
    this.pusher.disconnect();
  }
}

/** pusher-js reports close codes as `{type:'PusherError', data:{code, message}}`. */
function refusalOf(err: unknown): Refusal | null {
  if (!err || typeof err !== 'object') return null;
  const e = err as { type?: string; data?: { code?: unknown; message?: unknown }; error?: { data?: { code?: unknown; message?: unknown } } };
  const data = e.data ?? e.error?.data;
  if (!data) return null;
  const code = typeof data.code === 'number' ? data.code : null;
  const message = typeof data.message === 'string' ? data.message : 'connection refused';
  return { code, message };
}

/** A `pusher:subscription_error` payload: `{type, error, status}`. */
export interface SubscriptionError {
  type?: string;
  error?: string;
  status?: number;
}

export function describeSubscriptionError(e: SubscriptionError): string {
  const status = e.status ? ` (${e.status})` : '';
  return `${e.error || e.type || 'subscription refused'}${status}`;
}
