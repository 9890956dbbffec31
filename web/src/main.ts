// Sonde's dashboard: connect with a viewer token, list hosts, watch some of them live.

import 'uplot/dist/uPlot.min.css';
import './app.css';
import * as credentials from './credentials';
import { showRelayConfirm } from './confirm';
import { Relay, describeSubscriptionError, type ConnState, type SubscriptionError } from './connection';
import { el } from './dom';
import { HostList } from './hostlist';
import { Inventory, type InventoryMessage } from './inventory';
import { brand, showLogin } from './login';
import { CLOSE, EVENT_INVENTORY, INVENTORY_CHANNEL, SUBSCRIPTION_ERROR, SUBSCRIPTION_SUCCEEDED } from './names';
import * as origin from './origin';
import { OWN, type Target } from './origin';
import type { HostPanel } from './panel';
import { mountRelayPage } from './relaypage';
import { TopBar, stateText } from './topbar';
import { Watched } from './watched';

const SLIDE_EVERY_MS = 50;

interface TestHook {
  connection(): ConnState;
  panels: Record<string, HostPanel>;
  hosts(): number;
  renderedRows(): number;
  inventory: Inventory;
}

declare global {
  interface Window {
    __sonde?: TestHook;
  }
}

const app = document.getElementById('app')!;

/** Settles which relay to use (asking first if a link names another), then connects. */
function boot(): void {
  const { creds, requestedRelay } = credentials.load();
  const decision = origin.decide(requestedRelay, credentials.rememberedRelay(), location);
  switch (decision.kind) {
    case 'own':
      if (decision.forget) credentials.forgetRelay();
      return start(creds, OWN, null);
    case 'remembered':
      return start(creds, { kind: 'other', relay: decision.relay }, null);
    case 'ask': {
      const relay = decision.relay;
      // Nothing is connected until the user answers: no Relay exists before this callback.
      return showRelayConfirm(app, relay, origin.ownLabel(location), (confirmed) => {
        if (confirmed) credentials.rememberRelay(origin.label(relay));
        else credentials.forgetRelay();
        start(creds, confirmed ? { kind: 'other', relay } : OWN, null);
      });
    }
    case 'invalid':
      credentials.forgetRelay();
      return start(creds, OWN, `The link names "${decision.text}" as its relay, which is not a host:port address; this page uses its own relay.`);
  }
}

function start(creds: credentials.Credentials | null, target: Target, note: string | null): void {
  const expiry = creds && credentials.tokenExpiry(creds.token);
  if (creds && expiry && expiry <= Date.now()) {
    credentials.clear();
    showLogin(app, { problem: `This token expired at ${new Date(expiry).toLocaleString()}. Paste a new one.`, knownKey: creds.key, target }, run);
  } else if (creds) run(creds, target, note);
  else showLogin(app, { problem: note, knownKey: '', target }, run);
}

/** The dashboard for one token on one relay, until the token is changed. */
function run(creds: credentials.Credentials, target: Target, note: string | null = null): void {
  const relay = new Relay(creds, target);
  const inventory = new Inventory();
  // Listeners on the document live as long as this connection does.
  const scope = new AbortController();
  let relayRefused = false;
  let frame = 0;

  const notice = el('div', { class: 'notice notice-error', role: 'alert', hidden: '' });
  const linkNote = note ? el('p', { class: 'notice notice-error', role: 'status' }, note) : null;
  const watched: Watched = new Watched(relay, inventory, {
    changed: (host) => list.refresh(host),
    closed: (host) => list.focusHost(host),
    resized: (count) => {
      setTitle();
      bar.offerHostsToggle(count > 0);
      if (count === 0) layout.classList.remove('hosts-hidden');
      layout.classList.toggle('has-panels', count > 0);
    },
  });
  const list = new HostList(inventory, { realtime: (host) => watched.open(host), isOpen: (host) => watched.has(host) });
  const layout = el('div', { class: 'layout' }, list.root, watched.root);
  const bar = new TopBar({
    appKey: creds.key,
    otherRelay: target.kind === 'other' ? origin.label(target.relay) : null,
    expiry: credentials.tokenExpiry(creds.token),
    logo: brand(),
    retry: () => relay.reconnect(),
    changeToken: () => changeToken(null),
    toggleHosts: (shown) => layout.classList.toggle('hosts-hidden', !shown),
  });
  app.replaceChildren(...[bar.root, linkNote, notice, layout].filter((n): n is HTMLElement => n !== null));
  const relayPage = mountRelayPage(relay, creds.token, target, layout);

  function setTitle(): void {
    const hosts = [...watched.panels.keys()].join(', ');
    const state = relay.state === 'connected' ? '' : ` (${stateText(relay.state).toLowerCase()})`;
    document.title = `${hosts ? `${hosts} · ` : ''}Sonde${state}`;
  }

  function setConn(s: ConnState): void {
    setTitle();
    bar.setConn(s, relay.lastError?.code);
  }

  function refuse(message: string, headline = 'The relay refused this token.'): void {
    relayRefused = true;
    const another = el('button', { type: 'button', class: 'btn btn-small' }, 'Enter another token');
    another.addEventListener('click', () => changeToken(null));
    notice.replaceChildren(el('strong', {}, `${headline} `), message, ' ', another);
    notice.hidden = false;
    list.setBlocked('No hosts to show: the relay did not accept this token.');
  }

  function changeToken(problem: string | null, keepKey = true): void {
    watched.closeAll();
    relayPage?.close();
    relay.disconnect();
    credentials.clear();
    cancelAnimationFrame(frame);
    bar.destroy();
    list.destroy();
    scope.abort();
    document.title = 'Sonde';
    showLogin(app, { problem, knownKey: keepKey ? creds.key : '', target }, run);
  }

  relay.onState((s) => {
    setConn(s);
    if (s === 'connected' && !relayRefused) notice.hidden = true;
  });
  relay.onRefusal((r) => {
    setConn(relay.state);
    const headline = r.code === CLOSE.UnknownApp ? 'The relay does not know this app key.' : undefined;
    refuse(`${r.message}${r.code ? ` (close code ${r.code})` : ''}.`, headline);
  });

  const invChannel = relay.subscribe(INVENTORY_CHANNEL);
  invChannel.bind(EVENT_INVENTORY, (msg: InventoryMessage) => inventory.apply(msg));
  invChannel.bind(SUBSCRIPTION_SUCCEEDED, () => {
    relayRefused = false;
    notice.hidden = true;
    list.setBlocked(null);
  });
  invChannel.bind(SUBSCRIPTION_ERROR, (e: SubscriptionError) => refuse(`${describeSubscriptionError(e)}.`));
  watched.laidOut();

  // One render loop for every panel: data redraws when it changed, the window slides a few
  // times a second, and nothing runs while the tab is hidden.
  let lastSlide = 0;
  const loop = (now: number) => {
    frame = requestAnimationFrame(loop);
    const slide = now - lastSlide >= SLIDE_EVERY_MS;
    if (slide) lastSlide = now;
    const wall = Date.now();
    watched.frame(wall, slide);
    relayPage?.frame(wall, slide);
  };
  frame = requestAnimationFrame(loop);

  document.addEventListener(
    'keydown',
    (e) => {
      const t = e.target as HTMLElement;
      const typing = t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT';
      if (e.key === '/' && !typing) {
        e.preventDefault();
        list.focusFilter();
      }
    },
    { signal: scope.signal },
  );

  const hook: TestHook = {
    connection: () => relay.state,
    panels: {},
    hosts: () => inventory.agents.size,
    renderedRows: () => list.renderedRows(),
    inventory,
  };
  Object.defineProperty(hook, 'panels', { get: () => Object.fromEntries(watched.panels) });
  window.__sonde = hook;
}

boot();
