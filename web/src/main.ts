// Sonde's dashboard: connect with a viewer token, list hosts, watch some of them live.

import 'uplot/dist/uPlot.min.css';
import './app.css';
import * as credentials from './credentials';
import { showRelayConfirm } from './confirm';
import { Relay, describeSubscriptionError, type ConnState, type SubscriptionError } from './connection';
import { el } from './dom';
import * as fmt from './format';
import { HostList } from './hostlist';
import { Inventory, type InventoryMessage } from './inventory';
import { brand, showLogin } from './login';
import * as origin from './origin';
import { OWN, type Target } from './origin';
import { HostPanel } from './panel';
import { mountRelayPage } from './relaypage';

const INVENTORY_CHANNEL = 'private-sonde-inventory';
const SLIDE_EVERY_MS = 50;

const STATE_TEXT: Record<ConnState, string> = {
  initialized: 'Starting',
  connecting: 'Connecting…',
  connected: 'Connected',
  unavailable: 'Reconnecting…',
  failed: 'Connection failed',
  disconnected: 'Disconnected',
};

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

function run(creds: credentials.Credentials, target: Target, note: string | null = null): void {
  const relay = new Relay(creds, target);
  const inventory = new Inventory();
  const panels = new Map<string, HostPanel>();
  // Listeners on the document live as long as this connection does.
  const scope = new AbortController();

  const connDot = el('span', { class: 'conn-dot', 'aria-hidden': 'true' });
  const connText = el('span', { class: 'conn-text' }, 'Connecting…');
  const conn = el('div', { class: 'conn', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting' }, connDot, connText);
  const retry = el('button', { type: 'button', class: 'btn btn-ghost btn-small', hidden: '' }, 'Retry now');
  const signOut = el('button', { type: 'button', class: 'btn btn-ghost btn-small' }, 'Change token');
  const hostsToggle = el('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-pressed': 'true', hidden: '' }, 'Host list');
  const notice = el('div', { class: 'notice notice-error', role: 'alert', hidden: '' });
  const linkNote = note ? el('p', { class: 'notice notice-error', role: 'status' }, note) : null;
  const expiryNote = el('span', { class: 'expiry', hidden: '' });
  const expiry = credentials.tokenExpiry(creds.token);
  const panelsEl = el('main', { class: 'panels', 'aria-label': 'Watched hosts' });
  const emptyPanels = el('p', { class: 'panels-empty' }, 'Press Realtime on a host to watch it live.');
  panelsEl.append(emptyPanels);

  const list = new HostList(inventory, {
    realtime: (host) => open(host),
    isOpen: (host) => panels.has(host),
  });

  const layout = el('div', { class: 'layout' }, list.root, panelsEl);
  const header = el(
    'header',
    { class: 'topbar' },
    brand(),
    el('span', { class: 'app-key', title: 'App key' }, creds.key),
    target.kind === 'other' ? el('span', { class: 'relay-host', title: 'Relay (not the one that served this page)' }, origin.label(target.relay)) : null,
    expiryNote,
    hostsToggle,
    el('div', { class: 'spacer' }),
    conn,
    retry,
    signOut,
  );
  app.replaceChildren(...[header, linkNote, notice, layout].filter((n): n is HTMLElement => n !== null));
  const relayPage = mountRelayPage(relay, creds.token, target, layout);

  function setTitle(): void {
    const hosts = [...panels.keys()].join(', ');
    const state = relay.state === 'connected' ? '' : ` (${STATE_TEXT[relay.state].toLowerCase()})`;
    document.title = `${hosts ? `${hosts} · ` : ''}Sonde${state}`;
  }

  // The relay closes the connection when the token expires: say so before it happens.
  const expiryTimer = setInterval(() => {
    if (!expiry) return;
    const left = expiry - Date.now();
    expiryNote.hidden = left > 15 * 60_000;
    const text = left > 0 ? `token expires in ${fmt.duration(left)}` : 'token expired';
    if (expiryNote.textContent !== text) expiryNote.textContent = text;
  }, 1000);

  function setConn(s: ConnState): void {
    setTitle();
    conn.dataset.state = s;
    const err = relay.lastError;
    connText.textContent = s !== 'connected' && err?.code ? `${STATE_TEXT[s]} (${err.code})` : STATE_TEXT[s];
    retry.hidden = !(s === 'unavailable' || s === 'failed' || s === 'disconnected');
  }
  relay.onState((s) => {
    setConn(s);
    if (s === 'connected' && !relayRefused) notice.hidden = true;
  });

  let relayRefused = false;
  function refuse(message: string, headline = 'The relay refused this token.'): void {
    relayRefused = true;
    notice.replaceChildren(
      el('strong', {}, `${headline} `),
      message,
      ' ',
      el('button', { type: 'button', class: 'btn btn-small' }, 'Enter another token'),
    );
    notice.querySelector('button')!.addEventListener('click', () => changeToken(null));
    notice.hidden = false;
    list.setBlocked('No hosts to show: the relay did not accept this token.');
  }
  relay.onRefusal((r) => {
    setConn(relay.state);
    const headline = r.code === 4001 ? 'The relay does not know this app key.' : undefined;
    refuse(`${r.message}${r.code ? ` (close code ${r.code})` : ''}.`, headline);
  });

  function changeToken(problem: string | null, keepKey = true): void {
    for (const p of [...panels.values()]) p.close();
    relayPage?.close();
    relay.disconnect();
    credentials.clear();
    cancelAnimationFrame(frame);
    clearInterval(expiryTimer);
    list.destroy();
    scope.abort();
    document.title = 'Sonde';
    showLogin(app, { problem, knownKey: keepKey ? creds.key : '', target }, run);
  }
  signOut.addEventListener('click', () => changeToken(null));
  retry.addEventListener('click', () => relay.reconnect());

  const invChannel = relay.subscribe(INVENTORY_CHANNEL);
  invChannel.bind('sonde:inventory', (msg: InventoryMessage) => inventory.apply(msg));
  invChannel.bind('pusher:subscription_succeeded', () => {
    relayRefused = false;
    notice.hidden = true;
    list.setBlocked(null);
  });
  invChannel.bind('pusher:subscription_error', (e: SubscriptionError) => refuse(`${describeSubscriptionError(e)}.`));

  function open(host: string): void {
    const existing = panels.get(host);
    if (existing) {
      existing.root.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      existing.root.focus({ preventScroll: true });
      return;
    }
    const panel = new HostPanel(host, relay, {
      agent: (h) => inventory.agents.get(h),
      closed: (h) => {
        panels.delete(h);
        list.refresh(h);
        layoutPanels();
        list.focusHost(h);
      },
    });
    panels.set(host, panel);
    panelsEl.append(panel.root);
    panel.start();
    list.refresh(host);
    layoutPanels();
  }

  hostsToggle.addEventListener('click', () => {
    const shown = hostsToggle.getAttribute('aria-pressed') !== 'true';
    hostsToggle.setAttribute('aria-pressed', String(shown));
    layout.classList.toggle('hosts-hidden', !shown);
  });

  function layoutPanels(): void {
    setTitle();
    emptyPanels.hidden = panels.size > 0;
    hostsToggle.hidden = panels.size === 0;
    if (panels.size === 0) {
      layout.classList.remove('hosts-hidden');
      hostsToggle.setAttribute('aria-pressed', 'true');
    }
    layout.classList.toggle('has-panels', panels.size > 0);
    panelsEl.style.setProperty('--panels', String(Math.max(1, panels.size)));
  }
  layoutPanels();

  // One render loop for every panel: data redraws when it changed, the window slides a few
  // times a second, and nothing runs while the tab is hidden.
  let frame = 0;
  let lastSlide = 0;
  const loop = (now: number) => {
    frame = requestAnimationFrame(loop);
    const slide = now - lastSlide >= SLIDE_EVERY_MS;
    if (slide) lastSlide = now;
    const wall = Date.now();
    for (const p of panels.values()) p.frame(wall, slide);
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
  Object.defineProperty(hook, 'panels', { get: () => Object.fromEntries(panels) });
  window.__sonde = hook;
}

boot();
