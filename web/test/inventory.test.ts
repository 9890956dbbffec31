import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Inventory, type AgentEntry, type Change } from '../src/inventory';

const agent = (host: string, online = true): AgentEntry => ({ host, online, last_seen: 1, since: 1, snapshot: null });

test('full pages replace the list once they stop arriving; updates touch only their agents', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const inv = new Inventory();
  const changes: Change[] = [];
  inv.onChange((c) => changes.push(c));

  inv.apply({ full: true, agents: [agent('a'), agent('b'), agent('gone')] });
  assert.equal(inv.agents.size, 3);
  assert.equal(inv.online, 3);

  // A later full list in two pages, without "gone".
  t.mock.timers.tick(5000);
  inv.apply({ full: true, agents: [agent('a')] });
  inv.apply({ full: true, agents: [agent('b', false)] });
  assert.equal(inv.agents.size, 3, 'nothing dropped while pages may still come');
  t.mock.timers.tick(2000);
  assert.deepEqual([...inv.agents.keys()].sort(), ['a', 'b']);
  assert.equal(inv.online, 1);
  assert.ok(changes.at(-1)!.membership);

  const revA = inv.agents.get('a')!.rev;
  inv.apply({ full: false, agents: [agent('b', true)] });
  assert.equal(inv.agents.get('a')!.rev, revA, 'a untouched');
  assert.equal(inv.online, 2);
  assert.deepEqual([...changes.at(-1)!.hosts], ['b']);
  assert.equal(changes.at(-1)!.membership, false);

  inv.apply({ full: false, agents: [agent('c')] });
  assert.equal(changes.at(-1)!.membership, true);
});

test('the last page of a full list settles it at once, however slowly the pages came', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const inv = new Inventory();
  inv.apply({ full: true, agents: [agent('a'), agent('b'), agent('gone')], last: true });
  assert.equal(inv.agents.size, 3);
  // A later list in three pages, seconds apart (a slow socket): nothing dropped in between.
  inv.apply({ full: true, agents: [agent('a')] });
  t.mock.timers.tick(3000);
  inv.apply({ full: true, agents: [agent('b')] });
  t.mock.timers.tick(3000);
  assert.equal(inv.agents.size, 3, 'pages still coming: nothing dropped');
  inv.apply({ full: true, agents: [agent('c')], last: true });
  assert.deepEqual([...inv.agents.keys()].sort(), ['a', 'b', 'c'], 'settled on the last page');
  assert.equal(inv.online, 3);
  t.mock.timers.tick(5000);
  assert.equal(inv.agents.size, 3, 'the pending timer does nothing more');
});
