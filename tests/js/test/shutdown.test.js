// SIGTERM: clients are closed with 4200 and pusher-js reconnects to the relay that comes back.

import assert from 'node:assert/strict';
import { after, describe } from 'node:test';

import { Relay, app, connected, it, subscribe, waitUntil } from '../lib/index.js';

describe('shutdown', () => {
  let relay;
  after(async () => relay?.stop(), { timeout: 15000 });

  it('closes every client with 4200 on SIGTERM, exits cleanly, and pusher-js comes back', async () => {
    relay = await Relay.start({ apps: [app(1001)] });
    const raw = await relay.connect();
    await raw.join('news');
    const client = relay.pusher();
    const firstId = await connected(client);
    await subscribe(client, 'news');

    const exit = await relay.terminate();
    const { code } = await raw.closedWithin();
    assert.equal(code, 4200);
    assert.deepEqual(exit, { code: 0, signal: null }, 'the relay exits 0 after a graceful shutdown');
    await waitUntil(() => client.connection.state !== 'connected', { what: 'pusher-js to notice the shutdown' });
    const retryError = client.states.all('error').map((e) => e.data?.error?.data?.code);
    assert.ok(retryError.includes(4200), `pusher-js saw ${JSON.stringify(retryError)}`);

    await relay.restart();
    const secondId = await connected(client, 20000);
    assert.notEqual(secondId, firstId);
    // pusher-js resubscribes on its own: an event on the channel reaches it.
    const news = client.channel('news');
    await waitUntil(() => news.log.all('pusher:subscription_succeeded').length >= 2, { what: 'pusher-js to resubscribe', timeout: 10000 });
    await relay.server().trigger('news', 'back', { up: true });
    const { data } = await news.log.waitFor('back');
    assert.deepEqual(data, { up: true });
  }, { timeout: 60000 });
});
