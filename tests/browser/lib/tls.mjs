// TLS for the browser tests: the relay's certificate comes from a CA made with openssl when
// the test runs (tests/js/lib/tls.js), and Chromium trusts that CA for real: it is added to
// an NSS database in a temporary HOME (`certutil`, from Debian's libnss3-tools), which is
// where Chromium on Linux looks for certificates its user trusts. Node's fetch cannot be given
// a CA, so requests of the test itself go through node:https with the CA.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

export { TestCa } from '../../js/lib/tls.js';

/** A HOME whose NSS database trusts `caFile` to identify web servers. `remove()` deletes it. */
export function homeTrusting(caFile) {
  const home = mkdtempSync(path.join(os.tmpdir(), 'sonde-browser-home-'));
  const db = path.join(home, '.pki/nssdb');
  mkdirSync(db, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password'], { stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'Sonde test CA', '-i', caFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { home, remove: () => rmSync(home, { recursive: true, force: true }) };
}

/** A fetch-like request over https trusting `ca` (PEM) alone: `{ status, text(), json() }`. */
export function fetchWithCa(url, { method = 'GET', ca } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: async () => body, json: async () => JSON.parse(body) }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end();
  });
}
