// The paste box shown when the page has no credentials, or they were refused or expired.

import * as credentials from './credentials';
import { el } from './dom';
import { label, OWN, type Target } from './origin';

export interface LoginOptions {
  /** Why the box is shown (a refused or expired token), if not simply for lack of one. */
  problem: string | null;
  knownKey: string;
  /** Where the pasted token will be sent: named plainly when it is not this page's relay. */
  target: Target;
}

/** The paste box: app key and viewer token. */
export function showLogin(app: HTMLElement, opts: LoginOptions, connect: (c: credentials.Credentials, target: Target) => void): void {
  const { problem, knownKey, target } = opts;
  const other = target.kind === 'other' ? label(target.relay) : null;
  const key = el('input', { id: 'login-key', name: 'key', required: '', autocomplete: 'off', spellcheck: 'false' });
  key.value = knownKey;
  const token = el('textarea', { id: 'login-token', name: 'token', required: '', rows: '4', spellcheck: 'false', autocomplete: 'off' });
  const useOwn = other ? el('button', { type: 'button', class: 'btn btn-ghost btn-small btn-link' }, "Use this page's relay instead") : null;
  const form = el(
    'form',
    { class: 'login card', 'aria-labelledby': 'login-title' },
    el('h1', { id: 'login-title' }, other ? `Connect to ${other}` : 'Connect to this relay'),
    problem ? el('p', { class: 'notice notice-error', role: 'alert' }, problem) : null,
    el('p', { class: 'muted' }, 'Paste the app key and a viewer token. Mint one on the relay host with ', el('code', {}, 'sonde-relay token --app ID --role viewer'), '.'),
    el('label', { for: 'login-key' }, 'App key'),
    key,
    el('label', { for: 'login-token' }, 'Viewer token'),
    token,
    el('button', { type: 'submit', class: 'btn btn-primary' }, 'Connect'),
    el('p', { class: 'muted small' }, `The token stays in this tab (session storage) and is sent only to ${other ?? 'this relay'}.`),
    useOwn,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const c = { key: key.value.trim(), token: token.value.trim() };
    if (!c.key || !c.token) return;
    credentials.save(c);
    connect(c, target);
  });
  useOwn?.addEventListener('click', () => {
    credentials.forgetRelay();
    showLogin(app, { problem: null, knownKey: key.value.trim(), target: OWN }, connect);
  });
  app.replaceChildren(el('div', { class: 'login-wrap' }, brand(), form));
  (knownKey ? token : key).focus();
}

export function brand(): HTMLElement {
  return el('div', { class: 'brand' }, el('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Sonde');
}
