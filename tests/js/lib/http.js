// HTTP API requests signed by hand (auth_version 1.0), so a test can get one detail wrong on
// purpose: the timestamp, the body_md5, the signature.

import crypto from 'node:crypto';

const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');
const hmac = (secret, s) => crypto.createHmac('sha256', secret).update(s).digest('hex');

/**
 * Options: `method`, `path` (after /apps/{id}), `params` (query), `body` (object or string),
 * and the knobs to break it: `timestamp` (unix seconds), `bodyMd5` (sent instead of the real
 * one; null sends none), `secret`, `signature`.
 * Resolves with `{ status, body, text }`, `body` being the decoded JSON (or null).
 */
export async function signedRequest({
  base,
  appId,
  key,
  secret,
  method = 'GET',
  path = '/channels',
  params = {},
  body,
  timestamp = Math.floor(Date.now() / 1000),
  bodyMd5,
  signature,
}) {
  const fullPath = `/apps/${appId}${path}`;
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const query = { ...params, auth_key: key, auth_timestamp: String(timestamp), auth_version: '1.0' };
  if (bodyMd5 === undefined && text) query.body_md5 = md5(text);
  else if (bodyMd5 !== undefined && bodyMd5 !== null) query.body_md5 = bodyMd5;
  const ordered = Object.keys(query)
    .map((k) => [k.toLowerCase(), query[k]])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const sig = signature ?? hmac(secret, [method, fullPath, ordered].join('\n'));
  const qs = new URLSearchParams({ ...query, auth_signature: sig }).toString();
  const res = await fetch(`${base}${fullPath}?${qs}`, {
    method,
    body: text,
    headers: text ? { 'content-type': 'application/json' } : {},
    signal: AbortSignal.timeout(5000),
  });
  const raw = await res.text();
  let decoded = null;
  try {
    decoded = JSON.parse(raw);
  } catch {
    // left null: the assertion on `body` will say so
  }
  return { status: res.status, body: decoded, text: raw };
}

/** Awaits an SDK call that must fail with `status`; returns the decoded error body. */
export async function rejectedWith(promise, status) {
  let response;
  try {
    response = await promise;
  } catch (err) {
    if (err.status !== status) {
      throw new Error(`expected HTTP ${status}, got ${err.status ?? err.message}: ${err.body ?? ''}`);
    }
    try {
      return JSON.parse(err.body);
    } catch {
      throw new Error(`HTTP ${status} body is not JSON: ${err.body}`);
    }
  }
  throw new Error(`expected HTTP ${status}, got ${response.status}: ${await response.text()}`);
}
