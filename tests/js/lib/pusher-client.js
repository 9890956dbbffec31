// pusher-js clients configured for a local relay, authorised by the official server SDK the
// way a real backend would do it in its auth endpoint.

import Pusher from 'pusher-js';

import { EventLog, SOON, nextEvent, record, withTimeout } from './wait.js';

Pusher.logToConsole = false;

/** Replaces the signature of `key:signature` with one that cannot be right. */
export function corrupt(auth) {
  const [key] = auth.split(':');
  return `${key}:${'0'.repeat(64)}`;
}

/**
 * Options:
 * - `user`: `{ id, info, watchlist }`: presence channel_data and signin user_data.
 * - `badAuth(channelName)`: true → that channel's authorisation carries a wrong signature.
 * - `badSignin`: the signin authorisation carries a wrong signature.
 * - `key`: connect with this app key instead of the app's own.
 * - any other pusher-js option (overrides the local defaults).
 */
export function pusherClient({ relay, app, server, key, user, badAuth = () => false, badSignin = false, ...options }) {
  const channelHandler = ({ socketId, channelName }, callback) => {
    try {
      const presence = channelName.startsWith('presence-') ? presenceData(user) : undefined;
      const auth = server.authorizeChannel(socketId, channelName, presence);
      if (badAuth(channelName)) auth.auth = corrupt(auth.auth);
      callback(null, auth);
    } catch (e) {
      callback(e, null);
    }
  };
  const userHandler = ({ socketId }, callback) => {
    try {
      const auth = server.authenticateUser(socketId, userData(user));
      if (badSignin) auth.auth = corrupt(auth.auth);
      callback(null, auth);
    } catch (e) {
      callback(e, null);
    }
  };
  const client = new Pusher(key ?? app.key, {
    wsHost: '127.0.0.1',
    wsPort: relay.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'local',
    disableStats: true,
    channelAuthorization: { customHandler: channelHandler },
    userAuthentication: { customHandler: userHandler },
    ...options,
  });
  client.states = recordStates(client);
  return client;
}

function presenceData(user) {
  if (!user) throw new Error('a presence channel needs a client made with { user }');
  const data = { user_id: user.id };
  if (user.info !== undefined) data.user_info = user.info;
  return data;
}

function userData(user) {
  if (!user) throw new Error('signin needs a client made with { user }');
  const data = { id: user.id };
  if (user.info !== undefined) data.user_info = user.info;
  if (user.watchlist !== undefined) data.watchlist = user.watchlist;
  return data;
}

/** Every connection state the client went through, and every connection error. */
function recordStates(client) {
  const log = new EventLog('connection');
  client.connection.bind('state_change', ({ current }) => log.push(current));
  client.connection.bind('error', (err) => log.push('error', err));
  return log;
}

/** Resolves when the client is connected; fails fast if pusher-js gives up. */
export function connected(client, timeout = SOON) {
  if (client.connection.state === 'connected') return Promise.resolve(client.connection.socket_id);
  const pending = new Promise((resolve, reject) => {
    const onChange = ({ current }) => {
      if (current === 'connected') {
        client.connection.unbind('state_change', onChange);
        resolve(client.connection.socket_id);
      } else if (current === 'failed') {
        client.connection.unbind('state_change', onChange);
        reject(new Error('pusher-js connection failed'));
      }
    };
    client.connection.bind('state_change', onChange);
  });
  return withTimeout(pending, timeout, `pusher-js to connect (states: ${client.states.events().join(' → ')})`);
}

/** Resolves when the channel is subscribed; rejects with the error if subscription fails. */
export function subscribed(channel, timeout = SOON) {
  if (channel.subscribed) return Promise.resolve(channel);
  const pending = new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', () => resolve(channel));
    channel.bind('pusher:subscription_error', (err) => reject(Object.assign(new Error(`subscription to ${channel.name} failed: ${JSON.stringify(err)}`), { data: err })));
  });
  return withTimeout(pending, timeout, `subscription to ${channel.name}`);
}

/** Subscribes, records everything the channel emits from the start in `channel.log`, and waits. */
export async function subscribe(client, name, timeout = SOON) {
  const channel = client.subscribe(name);
  channel.log ??= record(channel, name);
  await subscribed(channel, timeout);
  return channel;
}

/** Subscribes without waiting; the channel's log records what comes. */
export function subscribeLater(client, name) {
  const channel = client.subscribe(name);
  channel.log ??= record(channel, name);
  return channel;
}

/** Signs in and resolves once `pusher:signin_success` was handled (user_data set). */
export async function signin(client, timeout = SOON) {
  client.user.log ??= record(client.user, 'user');
  client.user.watchlist.log ??= record(client.user.watchlist, 'watchlist');
  client.signin();
  await withTimeout(
    (async () => {
      while (!client.user.user_data) {
        await client.user.signinDonePromise;
        if (!client.user.user_data) await new Promise((r) => setTimeout(r, 20));
      }
    })(),
    timeout,
    'signin_success',
  );
  return client.user.user_data;
}

export { nextEvent };
