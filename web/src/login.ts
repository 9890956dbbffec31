// The paste box shown when the page has no credentials, or they were refused or expired.

import * as credentials from './credentials';
import { el } from './dom';

/** The paste box: app key and viewer token. */
export function showLogin(app: HTMLElement, problem: string | null, knownKey: string, connect: (c: credentials.Credentials) => void): void {
  const key = el('input', { id: 'login-key', name: 'key', required: '', autocomplete: 'off', spellcheck: 'false' });
  key.value = knownKey;
  const token = el('textarea', { id: 'login-token', name: 'token', required: '', rows: '4', spellcheck: 'false', autocomplete: 'off' });
  const form = el(
    'form',
    { class: 'login card', 'aria-labelledby': 'login-title' },
    el('h1', { id: 'login-title' }, 'Connect to this relay'),
    problem ? el('p', { class: 'notice notice-error', role: 'alert' }, problem) : null,
    el('p', { class: 'muted' }, 'Paste the app key and a viewer token. Mint one on the relay host with ', el('code', {}, 'sonde-relay token --app ID --role viewer'), '.'),
    el('label', { for: 'login-key' }, 'App key'),
    key,
    el('label', { for: 'login-token' }, 'Viewer token'),
    token,
    el('button', { type: 'submit', class: 'btn btn-primary' }, 'Connect'),
    el('p', { class: 'muted small' }, 'The token stays in this tab (session storage) and is sent only to the relay.'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const c = { key: key.value.trim(), token: token.value.trim(), ws: credentials.wsOverride() };
    if (!c.key || !c.token) return;
    credentials.save(c);
    connect(c);
  });
  app.replaceChildren(el('div', { class: 'login-wrap' }, brand(), form));
  (knownKey ? token : key).focus();
}

export function brand(): HTMLElement {
  return el('div', { class: 'brand' }, el('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Sonde');
}
