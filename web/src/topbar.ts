// The bar above everything: the app key, the relay when it is not the page's own, the token's
// expiry, the connection's state with a retry, the host-list toggle and "Change token".

import type { ConnState } from './connection';
import { el, setText } from './dom';
import * as fmt from './format';

const STATE_TEXT: Record<ConnState, string> = {
  initialized: 'Starting',
  connecting: 'Connecting…',
  connected: 'Connected',
  unavailable: 'Reconnecting…',
  failed: 'Connection failed',
  disconnected: 'Disconnected',
};

export function stateText(s: ConnState): string {
  return STATE_TEXT[s];
}

export interface TopBarOptions {
  appKey: string;
  /** The relay's address when it is not the one that served the page. */
  otherRelay: string | null;
  /** When the token expires (ms since the epoch), if it says. */
  expiry: number | null;
  logo: HTMLElement;
  retry(): void;
  changeToken(): void;
  /** The host list shown (true) or hidden. */
  toggleHosts(shown: boolean): void;
}

export class TopBar {
  readonly root: HTMLElement;
  private conn = el('div', { class: 'conn', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting' });
  private connText = el('span', { class: 'conn-text' }, 'Connecting…');
  private retry = el('button', { type: 'button', class: 'btn btn-ghost btn-small', hidden: '' }, 'Retry now');
  private hostsToggle = el('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-pressed': 'true', hidden: '' }, 'Host list');
  private expiryNote = el('span', { class: 'expiry', hidden: '' });
  private timer: ReturnType<typeof setInterval>;

  constructor(private opts: TopBarOptions) {
    this.conn.append(el('span', { class: 'conn-dot', 'aria-hidden': 'true' }), this.connText);
    const signOut = el('button', { type: 'button', class: 'btn btn-ghost btn-small' }, 'Change token');
    this.root = el(
      'header',
      { class: 'topbar' },
      opts.logo,
      el('span', { class: 'app-key', title: 'App key' }, opts.appKey),
      opts.otherRelay ? el('span', { class: 'relay-host', title: 'Relay (not the one that served this page)' }, opts.otherRelay) : null,
      this.expiryNote,
      this.hostsToggle,
      el('div', { class: 'spacer' }),
      this.conn,
      this.retry,
      signOut,
    );
    signOut.addEventListener('click', () => opts.changeToken());
    this.retry.addEventListener('click', () => opts.retry());
    this.hostsToggle.addEventListener('click', () => {
      const shown = this.hostsToggle.getAttribute('aria-pressed') !== 'true';
      this.hostsToggle.setAttribute('aria-pressed', String(shown));
      opts.toggleHosts(shown);
    });
    // The relay closes the connection when the token expires: say so before it happens.
    this.timer = setInterval(() => this.showExpiry(), 1000);
  }

  private showExpiry(): void {
    if (!this.opts.expiry) return;
    const left = this.opts.expiry - Date.now();
    this.expiryNote.hidden = left > 15 * 60_000;
    const text = left > 0 ? `token expires in ${fmt.duration(left)}` : 'token expired';
    setText(this.expiryNote, text);
  }

  /** The connection's state, with the close code of the last refusal while not connected. */
  setConn(s: ConnState, code: number | null | undefined): void {
    this.conn.dataset.state = s;
    this.connText.textContent = s !== 'connected' && code ? `${STATE_TEXT[s]} (${code})` : STATE_TEXT[s];
    this.retry.hidden = !(s === 'unavailable' || s === 'failed' || s === 'disconnected');
  }

  /** The host-list toggle is offered only while panels are open; without them the list shows. */
  offerHostsToggle(offered: boolean): void {
    this.hostsToggle.hidden = !offered;
    if (!offered) this.hostsToggle.setAttribute('aria-pressed', 'true');
  }

  destroy(): void {
    clearInterval(this.timer);
  }
}
