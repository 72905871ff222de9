// The upstream sockets' table of queries by ID (src/upstream/id-table.ts) must behave as a
// Map of ID to value would, through any mix of sets, deletes, growth and sweeps: a reply
// matched to the wrong query, or a query lost from the table, would be a wrong answer or
// a timeout for a client.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdTable } from '../src/upstream/id-table.js';

/** A small deterministic generator (mulberry32), so a failure repeats. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertSame(table: IdTable<string>, model: Map<number, string>, ids: number[]): void {
  assert.equal(table.size, model.size);
  for (const id of ids) {
    assert.equal(table.get(id), model.get(id), `get(${id})`);
    assert.equal(table.has(id), model.has(id), `has(${id})`);
  }
  assert.deepEqual(table.list().sort(), [...model.values()].sort());
}

test('sets, gets and deletes as a Map does, through growth, over IDs that crowd a few slots', () => {
  const random = rng(7);
  // crowded: 300 IDs whose Fibonacci hashes land anywhere, deleted and set again in any order
  for (const span of [300, 65536]) {
    const table = new IdTable<string>(8);
    const model = new Map<number, string>();
    const ids = Array.from({ length: 400 }, () => Math.floor(random() * span));
    for (let step = 0; step < 20_000; step++) {
      const id = ids[Math.floor(random() * ids.length)];
      const op = random();
      if (op < 0.5) {
        const value = `v${step}`;
        table.set(id, value);
        model.set(id, value);
      } else {
        assert.equal(table.delete(id), model.delete(id), `delete(${id}) at step ${step}`);
      }
      if (step % 997 === 0) assertSame(table, model, ids);
    }
    assertSame(table, model, ids);
  }
});

test('a deleted ID is gone and its neighbours found, also when the probe wraps around the end', () => {
  const table = new IdTable<string>(8);
  const model = new Map<number, string>();
  // every ID 0..65535 once: all 8, 16, 32 … slots get runs that wrap
  const random = rng(11);
  const order = Array.from({ length: 65536 }, (_, i) => i).sort(() => random() - 0.5);
  for (const id of order.slice(0, 3000)) {
    table.set(id, `v${id}`);
    model.set(id, `v${id}`);
  }
  for (const id of order.slice(0, 3000).filter((_, i) => i % 3 === 0)) {
    assert.equal(table.delete(id), true);
    model.delete(id);
    assert.equal(table.get(id), undefined);
  }
  assert.equal(table.delete(order[0]), false, 'a second delete finds nothing');
  assertSame(table, model, order.slice(0, 3100));
});

test('deleteWhere drops exactly the entries it is asked to, and clear() empties the table', () => {
  const table = new IdTable<number | string>();
  for (let id = 0; id < 500; id++) table.set(id * 131, id % 2 === 0 ? id : `q${id}`);
  table.deleteWhere((value) => typeof value === 'number' && value < 300);
  assert.equal(table.size, 500 - 150);
  for (let id = 0; id < 500; id++) {
    const kept = id % 2 === 1 || id >= 300;
    assert.equal(table.has(id * 131), kept, `id ${id * 131}`);
  }
  table.clear();
  assert.equal(table.size, 0);
  assert.equal(table.get(131), undefined);
  assert.deepEqual(table.list(), []);
  table.set(131, 'again');
  assert.equal(table.get(131), 'again');
});

test('setting an ID that is there replaces its value without counting it twice', () => {
  const table = new IdTable<string>();
  table.set(53, 'first');
  table.set(53, 'second');
  assert.equal(table.size, 1);
  assert.equal(table.get(53), 'second');
});
