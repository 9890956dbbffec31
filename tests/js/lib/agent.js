// The real `sonde-agent` process against a relay, with an agent token minted by
// `sonde-relay token` and handed over in a file (as users run it).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { relayBin } from './relay.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const agentBin = process.env.SONDE_AGENT_BIN || path.join(repoRoot, 'target/debug/sonde-agent');

export class Agent {
  /** Starts an agent for `host` on `relay`, app `app` (`{ id, key, secret }`). */
  static start({ relay, app, host }) {
    if (!existsSync(agentBin)) throw new Error(`sonde-agent not found at ${agentBin}: run \`cargo build -p sonde-agent\` or set SONDE_AGENT_BIN`);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sonde-js-agent-'));
    const token = execFileSync(relayBin, ['token', '--app', app.id, '--role', 'agent', '--host', host, '--ttl', '1h'], {
      env: { ...process.env, SONDE_APP_SECRET: app.secret },
    })
      .toString()
      .trim();
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const child = spawn(agentBin, ['--relay', relay.wsBase, '--key', app.key, '--host', host, '--token-file', tokenFile, '--state-dir', path.join(dir, 'state'), '--statsd', 'off'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, RUST_LOG: 'warn' },
    });
    const agent = new Agent(child, dir, host);
    child.stderr.on('data', (c) => {
      agent.logs = (agent.logs + c.toString()).slice(-10000);
    });
    return agent;
  }

  constructor(child, dir, host) {
    this.child = child;
    this.dir = dir;
    this.host = host;
    this.logs = '';
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Stops it with `signal` (SIGTERM: a clean goodbye; SIGKILL: it vanishes). */
  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
