// A pusher-js or Laravel Echo client in a node process of its own. pusher-js on Node opens
// its websocket with no TLS options to pass, so it trusts what Node trusts: the system's
// roots plus NODE_EXTRA_CA_CERTS, which Node reads once at start. A child process is how a
// test gives it the test CA the way a user's application gets its own.
//
// argv[2] is JSON: { kind: 'pusher' | 'echo', appId, key, port, channels: [name], events:
// [name], options: pusher-js options }; the app secret comes in SONDE_TEST_APP_SECRET (never on a command line). Reports
// JSON lines on stdout: { state }, { subscribed: channel }, { failed: channel, error },
// { event, channel, data }. Exits when stdin closes.

import Echo from 'laravel-echo';
import PusherServer from 'pusher';
import Pusher from 'pusher-js';

const spec = JSON.parse(process.argv[2]);
const report = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const signer = new PusherServer({ appId: spec.appId, key: spec.key, secret: process.env.SONDE_TEST_APP_SECRET, host: '127.0.0.1', useTLS: true });

// The backend's auth endpoint, in-process: the official SDK signs the subscription.
const channelAuthorization = {
  customHandler: ({ socketId, channelName }, callback) => {
    const presence = channelName.startsWith('presence-') ? { user_id: `child-${process.pid}` } : undefined;
    callback(null, signer.authorizeChannel(socketId, channelName, presence));
  },
};

const client = new Pusher(spec.key, {
  wsHost: '127.0.0.1',
  wssPort: spec.port,
  forceTLS: true,
  // 'ws' is pusher-js's websocket transport; forceTLS makes it wss://.
  enabledTransports: ['ws'],
  cluster: 'local',
  disableStats: true,
  channelAuthorization,
  ...spec.options,
});
report({ state: client.connection.state });
client.connection.bind('state_change', ({ current }) => report({ state: current }));
client.connection.bind('error', (e) => report({ state: 'error', error: String(e?.error?.message ?? e?.type ?? e) }));

if (spec.kind === 'echo') {
  const echo = new Echo({ broadcaster: 'pusher', key: spec.key, client });
  for (const name of spec.channels) {
    const channel = name.startsWith('private-') ? echo.private(name.slice('private-'.length)) : echo.channel(name);
    channel.subscribed(() => report({ subscribed: name }));
    channel.error((e) => report({ failed: name, error: JSON.stringify(e) }));
    // A leading dot: the event name as published, without Laravel's namespace.
    for (const ev of spec.events) channel.listen(`.${ev}`, (data) => report({ event: ev, channel: name, data }));
  }
} else {
  for (const name of spec.channels) {
    const channel = client.subscribe(name);
    channel.bind('pusher:subscription_succeeded', () => report({ subscribed: name }));
    channel.bind('pusher:subscription_error', (e) => report({ failed: name, error: JSON.stringify(e) }));
    for (const ev of spec.events) channel.bind(ev, (data) => report({ event: ev, channel: name, data }));
  }
}

process.stdin.on('end', () => {
  client.disconnect();
  process.exit(0);
});
process.stdin.resume();
