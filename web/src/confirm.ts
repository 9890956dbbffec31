// The question asked before the viewer token goes to a relay other than the one that served
// the page. It is part of the page (not window.confirm) so it can name the host plainly, and
// nothing connects anywhere until one of its buttons is pressed.

import { el } from './dom';
import { brand } from './login';
import { label, type Endpoint } from './origin';

/** Asks whether to connect to `relay`; `choose(true)` once confirmed, `choose(false)` on Cancel. */
export function showRelayConfirm(app: HTMLElement, relay: Endpoint, own: string, choose: (confirmed: boolean) => void): void {
  const other = label(relay);
  const connect = el('button', { type: 'button', class: 'btn btn-danger' }, `Connect to ${other}`);
  const cancel = el('button', { type: 'button', class: 'btn btn-primary' }, 'Cancel');
  const card = el(
    'section',
    { class: 'login card relay-confirm', role: 'alertdialog', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' },
    el('h1', { id: 'confirm-title' }, 'Connect to another relay?'),
    el(
      'div',
      { id: 'confirm-text' },
      el('p', {}, 'This link asks the dashboard to connect to ', el('strong', { class: 'relay-name' }, other), ' instead of ', el('strong', {}, own), ', the relay that served this page.'),
      el('p', { class: 'notice notice-warn' }, 'Your viewer token would be sent to ', el('strong', {}, other), '. Connect only if you run that relay or trust it.'),
    ),
    el('div', { class: 'actions' }, connect, cancel),
  );
  let chosen = false;
  const once = (confirmed: boolean) => () => {
    if (chosen) return;
    chosen = true;
    choose(confirmed);
  };
  connect.addEventListener('click', once(true));
  cancel.addEventListener('click', once(false));
  app.replaceChildren(el('div', { class: 'login-wrap' }, brand(), card));
  document.title = 'Sonde · another relay?';
  // The safe answer has focus: Enter or Space on arrival does not send the token anywhere.
  cancel.focus();
}
