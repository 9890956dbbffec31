import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as names from '../src/names';

const protocol = (file: string) => readFileSync(new URL(`../../protocol/src/${file}`, import.meta.url), 'utf8');

test("channel and event names are the protocol crate's", () => {
  const rust = new Map([...protocol('sonde.rs').matchAll(/pub const ([A-Z_]+): &str = "([^"]*)";/g)].map((m) => [m[1], m[2]]));
  const mine = Object.entries(names).filter(([k, v]) => typeof v === 'string' && !k.startsWith('SUBSCRIPTION_'));
  assert.ok(mine.length >= 8, `${mine.length} names`);
  for (const [k, v] of mine) assert.equal(v, rust.get(k), `${k} in protocol/src/sonde.rs`);
  assert.equal(names.hostChannel('web1'), 'private-sonde-host.web1');
});

test("close codes are the protocol crate's", () => {
  const rust = new Map([...protocol('close.rs').matchAll(/Self::([A-Za-z]+) => (\d{4}),/g)].map((m) => [m[1], Number(m[2])]));
  for (const [k, v] of Object.entries(names.CLOSE)) assert.equal(v, rust.get(k), `${k} in protocol/src/close.rs`);
  assert.equal(names.isFinalRefusal(4001), true);
  assert.equal(names.isFinalRefusal(4100), false);
  assert.equal(names.isFinalRefusal(null), false);
});
