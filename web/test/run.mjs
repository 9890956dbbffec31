// Bundles each test/*.test.ts for node with esbuild and runs them with node:test.
import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';

const files = readdirSync('test').filter((f) => f.endsWith('.test.ts'));
const out = '.test-build';
rmSync(out, { recursive: true, force: true });
await esbuild.build({
  entryPoints: files.map((f) => `test/${f}`),
  outdir: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  outExtension: { '.js': '.mjs' },
  logLevel: 'warning',
});
const built = files.map((f) => path.join(out, f.replace(/\.ts$/, '.mjs')));
const r = spawnSync(process.execPath, ['--test', ...built], { stdio: 'inherit' });
process.exit(r.status ?? 1);
