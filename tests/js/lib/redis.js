// A real redis-server on a free port, for cluster tests, and a one-shot GET.

import { spawn } from 'node:child_process';
import net from 'node:net';

import { freePort } from './relay.js';
import { sleep } from './wait.js';

/** Starts redis-server (no persistence); resolves once it accepts connections. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await sleep(50);
  }
  return { port, stop: () => child.kill('SIGKILL'), get: (key) => redisGet(port, key) };
}

/** `GET key` over RESP; resolves with the string, or null when the key is absent. */
export function redisGet(port, key) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`));
    let buf = '';
    s.setTimeout(5000, () => s.destroy(new Error('redis GET timed out')));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.startsWith('$-1\r\n')) {
        s.end();
        resolve(null);
        return;
      }
      const m = buf.match(/^\$(\d+)\r\n/);
      if (m && buf.length >= m[0].length + Number(m[1]) + 2) {
        s.end();
        resolve(buf.slice(m[0].length, m[0].length + Number(m[1])));
      }
    });
    s.on('error', reject);
  });
}
