// Certificates made when a test runs, with the `openssl` command: a CA of its own and
// certificates it issues for 127.0.0.1 and localhost. Nothing is committed; the directory
// holding the keys is removed by `remove()`.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const LEAF_EXTENSIONS = `subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
`;

export class TestCa {
  /** A new CA (ECDSA P-256, valid for two days) in a fresh temporary directory. */
  constructor(name = 'Sonde test CA') {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'sonde-js-ca-'));
    this.caFile = path.join(this.dir, 'ca.pem');
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
      '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], this.dir);
    this.ca = readFileSync(this.caFile, 'utf8');
    this.issued = 0;
  }

  /** A certificate for 127.0.0.1 and localhost: `{ certFile, keyFile, cert, key }`, the
   * certificate file holding the full chain (leaf, then this CA) as certbot writes it. */
  issue() {
    this.issued += 1;
    const base = `leaf${this.issued}`;
    writeFileSync(path.join(this.dir, 'leaf.ext'), LEAF_EXTENSIONS);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', '/CN=sonde test'], this.dir);
    openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-extfile', 'leaf.ext', '-out', `${base}.crt`], this.dir);
    const leaf = readFileSync(path.join(this.dir, `${base}.crt`), 'utf8');
    const certFile = path.join(this.dir, `${base}.chain.pem`);
    writeFileSync(certFile, leaf + this.ca);
    const keyFile = path.join(this.dir, `${base}.key`);
    return { certFile, keyFile, cert: leaf + this.ca, key: readFileSync(keyFile, 'utf8') };
  }

  remove() {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
