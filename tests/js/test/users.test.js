// User authentication (signin), sendToUser, terminateUserConnections and the watchlist.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe } from 'node:test';

import { app, it, signin, sleep, subscribe, uniq, useRelay, waitUntil } from '../lib/index.js';

const main = app(1001);
const noSignin = app(1002, { user_authentication: false });

const relay = useRelay({ apps: [main, noSignin] });

const user = (id, extra = {}) => ({ id, info: { name: id.toUpperCase() }, ...extra });

/** Waits until the relay has handled a disconnect: `marker` was joined by that connection only. */
async function vacated(marker) {
  await waitUntil(async () => (await relay.channelInfo(marker)).occupied === false, { what: `${marker} to be vacated` });
}

describe('signin', () => {
  it('signs in with the SDK\'s authenticateUser and gets the user_data back', async () => {
    const client = relay.pusher({ user: user(uniq('ann')) });
    const data = await signin(client);
    assert.equal(data.id, client.user.user_data.id);
    assert.deepEqual(data.user_info, { name: data.id.toUpperCase() });
  });

  it('answers pusher:signin with pusher:signin_success carrying the same user_data string', async () => {
    const sock = await relay.connect();
    const userData = JSON.stringify({ id: 'wire-user', user_info: { a: 1 } });
    const { auth } = relay.server().authenticateUser(sock.socketId, JSON.parse(userData));
    sock.send({ event: 'pusher:signin', data: { auth, user_data: userData } });
    const ok = await sock.next('pusher:signin_success');
    assert.equal(ok.data.user_data, userData);
  });

  it('closes the connection with 4009 after a pusher:error 4009 when the signin signature is wrong', async () => {
    const sock = await relay.connect();
    const userData = JSON.stringify({ id: 'forger' });
    sock.send({ event: 'pusher:signin', data: { auth: `${main.key}:${'0'.repeat(64)}`, user_data: userData } });
    const { code } = await sock.closedWithin();
    assert.equal(code, 4009);
    const errors = sock.seen('pusher:error');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].data.code, 4009);
    assert.deepEqual(sock.seen('pusher:signin_success'), []);
  });

  it('pusher-js with a bad signin signature never becomes that user', async () => {
    const client = relay.pusher({ user: user(uniq('eve')), badSignin: true });
    client.signin();
    const refused = () => client.states.all('error').length > 0 || (client.states.has('connected') && client.connection.state !== 'connected');
    await waitUntil(refused, { what: 'the relay to refuse the signin' });
    assert.equal(client.user.user_data, null);
  });

  it('refuses signin with 4009 when the app disables user authentication', async () => {
    const sock = await relay.connect({ app: noSignin.id });
    const userData = { id: 'nobody' };
    const { auth, user_data } = relay.server(noSignin.id).authenticateUser(sock.socketId, userData);
    sock.send({ event: 'pusher:signin', data: { auth, user_data } });
    const closed = await sock.closedWithin();
    assert.equal(closed.code, 4009);
    assert.deepEqual(sock.seen('pusher:signin_success'), []);
  });

  it('refuses user_data without an id', async () => {
    const sock = await relay.connect();
    const userData = JSON.stringify({ user_info: { name: 'anonymous' } });
    // Signed correctly by hand: the SDK itself refuses to sign user_data without an id.
    const sig = crypto.createHmac('sha256', main.secret).update(`${sock.socketId}::user::${userData}`).digest('hex');
    sock.send({ event: 'pusher:signin', data: { auth: `${main.key}:${sig}`, user_data: userData } });
    const reply = await Promise.race([sock.next('pusher:error').then((f) => f.event), sock.closed.then(({ code }) => `closed ${code}`)]);
    assert.ok(reply === 'pusher:error' || reply === 'closed 4009', reply);
    assert.deepEqual(sock.seen('pusher:signin_success'), []);
  });

  it('refuses a client subscribing to another user\'s #server-to-user channel', async () => {
    const victim = uniq('victim');
    const sock = await relay.connect();
    const userData = { id: uniq('mallory') };
    const { auth, user_data } = relay.server().authenticateUser(sock.socketId, userData);
    sock.send({ event: 'pusher:signin', data: { auth, user_data } });
    await sock.next('pusher:signin_success');
    sock.subscribe(`#server-to-user-${victim}`, { auth: '' });
    await sock.next((f) => (f.event === 'pusher:subscription_error' && f.channel === `#server-to-user-${victim}`) || f.event === 'pusher:error');
    await relay.server().sendToUser(victim, 'private-note', { secret: true });
    await relay.server().sendToUser(userData.id, 'own-note', {});
    await sock.next('own-note');
    assert.deepEqual(sock.seen('private-note'), []);
  });
});

describe('sendToUser', () => {
  it('delivers to every connection of that user and to no one else', async () => {
    const dana = uniq('dana');
    const tab1 = relay.pusher({ user: user(dana) });
    const tab2 = relay.pusher({ user: user(dana) });
    const other = relay.pusher({ user: user(uniq('otto')) });
    await Promise.all([signin(tab1), signin(tab2), signin(other)]);
    const server = relay.server();
    await server.sendToUser(dana, 'note', { text: 'hello dana' });
    const [n1, n2] = await Promise.all([tab1.user.log.waitFor('note'), tab2.user.log.waitFor('note')]);
    assert.deepEqual(n1.data, { text: 'hello dana' });
    assert.deepEqual(n2.data, { text: 'hello dana' });
    await server.sendToUser(other.user.user_data.id, 'note', { text: 'hello otto' });
    const own = await other.user.log.waitFor('note');
    assert.deepEqual(own.data, { text: 'hello otto' });
    assert.equal(other.user.log.all('note').length, 1, 'otto did not get dana\'s note');
  });

  it('is not delivered to a connection that has not signed in', async () => {
    const fay = uniq('fay');
    const anonymous = await relay.connect();
    const signedIn = relay.pusher({ user: user(fay) });
    await signin(signedIn);
    await relay.server().sendToUser(fay, 'note', { n: 1 });
    await signedIn.user.log.waitFor('note');
    await anonymous.roundTrip();
    assert.deepEqual(anonymous.seen('note'), []);
  });

  it('reaches the user on the #server-to-user channel on the wire', async () => {
    const gus = uniq('gus');
    const sock = await relay.connect();
    const { auth, user_data } = relay.server().authenticateUser(sock.socketId, { id: gus });
    sock.send({ event: 'pusher:signin', data: { auth, user_data } });
    await sock.next('pusher:signin_success');
    // pusher-js subscribes to its server-to-user channel after signin; do the same.
    sock.subscribe(`#server-to-user-${gus}`, { auth: '' });
    await sleep(100);
    await relay.server().sendToUser(gus, 'direct', { to: gus });
    const frame = await sock.next('direct');
    assert.equal(frame.channel, `#server-to-user-${gus}`);
    assert.deepEqual(frame.data, { to: gus });
  });
});

describe('terminateUserConnections', () => {
  it('closes every connection of that user and leaves the others alone', async () => {
    const hal = uniq('hal');
    const tabs = [await relay.connect(), await relay.connect()];
    for (const sock of tabs) {
      const { auth, user_data } = relay.server().authenticateUser(sock.socketId, { id: hal });
      sock.send({ event: 'pusher:signin', data: { auth, user_data } });
      await sock.next('pusher:signin_success');
    }
    const bystander = await relay.connect();
    const { auth, user_data } = relay.server().authenticateUser(bystander.socketId, { id: uniq('ivy') });
    bystander.send({ event: 'pusher:signin', data: { auth, user_data } });
    await bystander.next('pusher:signin_success');

    const res = await relay.server().terminateUserConnections(hal);
    assert.equal(res.status, 200);
    const closes = await Promise.all(tabs.map((t) => t.closedWithin()));
    for (const { code } of closes) {
      assert.ok(code >= 4000 && code < 4100, `closed with ${code}: a code pusher-js does not reconnect on`);
    }
    await bystander.roundTrip();
    assert.ok(bystander.isOpen);
  });

  it('pusher-js ends up disconnected and does not sign back in', async () => {
    const ian = uniq('ian');
    const client = relay.pusher({ user: user(ian) });
    await signin(client);
    await relay.server().terminateUserConnections(ian);
    await waitUntil(() => client.connection.state !== 'connected', { what: 'pusher-js to lose its connection' });
    await sleep(1500);
    assert.notEqual(client.connection.state, 'connected', `states: ${client.states.events().join(' → ')}`);
  });
});

describe('watchlist', () => {
  it('reports a watched user coming online and going offline through pusher-js user.watchlist', async () => {
    const watched = uniq('watched');
    const watcher = relay.pusher({ user: user(uniq('watcher'), { watchlist: [watched] }) });
    await signin(watcher);
    const watchlist = watcher.user.watchlist.log;

    const marker = uniq('watched-marker');
    const target = relay.pusher({ user: user(watched) });
    await subscribe(target, marker);
    await signin(target);
    const online = await watchlist.waitFor('online');
    assert.deepEqual(online.data, { name: 'online', user_ids: [watched] });

    target.disconnect();
    const offline = await watchlist.waitFor('offline');
    assert.deepEqual(offline.data, { name: 'offline', user_ids: [watched] });
  });

  it('tells a watcher at signin who on its watchlist is already online', async () => {
    const early = uniq('early');
    const absent = uniq('absent');
    const target = relay.pusher({ user: user(early) });
    await signin(target);
    const watcher = relay.pusher({ user: user(uniq('late-watcher'), { watchlist: [early, absent] }) });
    await signin(watcher);
    const online = await watcher.user.watchlist.log.waitFor('online');
    assert.deepEqual(online.data.user_ids, [early]);
  });

  it('goes offline only when the watched user\'s last connection leaves', async () => {
    const kim = uniq('kim');
    const watcher = relay.pusher({ user: user(uniq('kims-friend'), { watchlist: [kim] }) });
    await signin(watcher);
    const log = watcher.user.watchlist.log;
    const marker1 = uniq('kim-tab1');
    const tab1 = relay.pusher({ user: user(kim) });
    await subscribe(tab1, marker1);
    await signin(tab1);
    await log.waitFor('online');
    const tab2 = relay.pusher({ user: user(kim) });
    await signin(tab2);

    tab1.disconnect();
    await vacated(marker1);
    await relay.server().sendToUser(watcher.user.user_data.id, 'control', {});
    await watcher.user.log.waitFor('control');
    assert.equal(log.has('offline'), false, 'kim is still online in tab 2');
    assert.equal(log.all('online').length, 1, 'the second tab did not announce kim again');

    tab2.disconnect();
    const offline = await log.waitFor('offline');
    assert.deepEqual(offline.data.user_ids, [kim]);
  });

  it('sends pusher_internal:watchlist_events on the wire', async () => {
    const lee = uniq('lee');
    const sock = await relay.connect();
    const { auth, user_data } = relay.server().authenticateUser(sock.socketId, { id: uniq('lees-watcher'), watchlist: [lee] });
    sock.send({ event: 'pusher:signin', data: { auth, user_data } });
    await sock.next('pusher:signin_success');
    const target = relay.pusher({ user: user(lee) });
    await signin(target);
    const frame = await sock.next('pusher_internal:watchlist_events');
    assert.equal(typeof JSON.parse(frame.raw).data, 'string');
    assert.deepEqual(frame.data, { events: [{ name: 'online', user_ids: [lee] }] });
    assert.equal(frame.channel, undefined);
  });
});
