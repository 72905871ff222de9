// NameFilter on its own: no false negatives through growth, deletion and re-adding, and
// absent names (almost) never reported present.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NameFilter } from '../src/table/redis/name-filter.js';

/** A seeded generator (xorshift32), so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz0123456789-';
function names(count: number, seed: number, suffix: string): string[] {
  const next = random(seed);
  const out = new Set<string>();
  while (out.size < count) {
    let label = '';
    const length = 1 + Math.floor(next() * 20);
    for (let i = 0; i < length; i++) label += LETTERS[Math.floor(next() * 36)]; // no '-' at the ends
    out.add(`${label}.${suffix}`);
  }
  return [...out];
}

describe('NameFilter', () => {
  it('holds 100k random names with no false negatives, growing from its smallest size', () => {
    const filter = new NameFilter();
    const startBytes = filter.bytes;
    const present = names(100_000, 1, 'example.com');
    for (const name of present) assert.equal(filter.add(name), true);
    assert.equal(filter.size, 100_000);
    assert.ok(filter.bytes > startBytes * 1000, `grew to ${filter.bytes} bytes`);
    assert.ok(filter.bytes <= 100_000 * 32, `${filter.bytes} bytes for 100k names`);
    const missing = present.filter((name) => !filter.has(name));
    assert.deepEqual(missing, []);
    for (const name of present.slice(0, 1000)) assert.equal(filter.add(name), false, 'adding twice changes nothing');
    assert.equal(filter.size, 100_000);
  });

  it('says absent for names it never held (at most a rare fingerprint collision)', () => {
    const filter = new NameFilter();
    for (const name of names(100_000, 2, 'example.com')) filter.add(name);
    const absent = names(100_000, 3, 'example.net'); // another suffix: none of them was added
    const falsePositives = absent.filter((name) => filter.has(name)).length;
    assert.equal(falsePositives, 0);
    // Names that differ in one character or only in the wildcard label.
    assert.equal(filter.has('*.example.com'), false);
    filter.add('a.b.test');
    assert.equal(filter.has('a.b.tesu'), false);
    assert.equal(filter.has('*.b.test'), false);
    assert.equal(filter.has('a.b.test.'), false);
    assert.equal(filter.has(''), false);
  });

  it('deletes without losing the names that shared a probe run, and re-adds', () => {
    const filter = new NameFilter(50_000); // sized up front: long runs at the full load factor
    const all = names(50_000, 4, 'example.org');
    for (const name of all) filter.add(name);
    const gone = all.filter((_, i) => i % 3 === 0);
    const kept = all.filter((_, i) => i % 3 !== 0);
    for (const name of gone) assert.equal(filter.delete(name), true);
    assert.equal(filter.size, kept.length);
    assert.deepEqual(
      kept.filter((name) => !filter.has(name)),
      [],
      'kept names must stay',
    );
    assert.equal(gone.filter((name) => filter.has(name)).length, 0);
    assert.equal(filter.delete(gone[0]), false, 'deleting an absent name is a no-op');
    for (const name of gone) assert.equal(filter.add(name), true);
    assert.equal(filter.size, all.length);
    assert.deepEqual(
      all.filter((name) => !filter.has(name)),
      [],
    );
  });

  for (const poolSize of [12, 50, 2000])
    it(`agrees with a Set through 100k random adds and deletes among ${poolSize} names`, () => {
      // Few names, many operations: probe runs wrap around the end of the slot array.
      const pool = names(poolSize, 5, 'x.test');
      const next = random(6 + poolSize);
      const filter = new NameFilter();
      const model = new Set<string>();
      for (let op = 0; op < 100_000; op++) {
        const name = pool[Math.floor(next() * pool.length)];
        if (next() < 0.5) {
          assert.equal(filter.add(name), !model.has(name));
          model.add(name);
        } else {
          assert.equal(filter.delete(name), model.has(name));
          model.delete(name);
        }
        if (op % 10_000 === 0) {
          for (const n of pool) assert.equal(filter.has(n), model.has(n), `${n} after ${op} operations`);
        }
      }
      assert.equal(filter.size, model.size);
      for (const n of pool) assert.equal(filter.has(n), model.has(n));
    });

  it('clears, and tells which fingerprints another filter lacks', () => {
    const a = new NameFilter();
    const b = new NameFilter();
    for (const name of ['x.test', 'y.test', '*.z.test']) {
      a.add(name);
      b.add(name);
    }
    assert.equal(a.hasAnyNotIn(b), false);
    a.add('new.test');
    assert.equal(a.hasAnyNotIn(b), true);
    assert.equal(b.hasAnyNotIn(a), false, 'extra names on the other side do not count');
    a.clear();
    assert.equal(a.size, 0);
    assert.equal(a.has('x.test'), false);
    a.add('x.test');
    assert.equal(a.has('x.test'), true);
  });
});
