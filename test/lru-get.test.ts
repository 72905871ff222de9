// lruGet (src/lru-get.ts): cache.get without an options object per call. It must read
// what get reads, keep the LRU's order as get does, and leave lru-cache's diagnostics as
// they are: each get published with a status of its own, not one object shared and
// overwritten by the next get.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { LRUCache } from 'lru-cache';
import { lruGet } from '../src/lru-get.js';

test('reads what get reads, and a read keeps a name from being the one evicted', () => {
  const cache = new LRUCache<string, number>({ max: 2 });
  cache.set('a', 1);
  cache.set('b', 2);
  assert.equal(lruGet(cache, 'a'), 1);
  assert.equal(lruGet(cache, 'missing'), undefined);
  cache.set('c', 3); // evicts the least recently used: b, since a was just read
  assert.deepEqual([lruGet(cache, 'a'), lruGet(cache, 'b'), lruGet(cache, 'c')], [1, undefined, 3]);
});

test('with a diagnostics subscriber, every get is published with a status of its own', () => {
  const cache = new LRUCache<string, number>({ max: 10 });
  cache.set('a', 1);
  const seen: { op?: string; key?: unknown; get?: string; value?: unknown }[] = [];
  const listen = (status: unknown) => {
    if ((status as { op?: string }).op === 'get') seen.push(status as (typeof seen)[number]);
  };
  subscribe('lru-cache:metrics', listen);
  try {
    lruGet(cache, 'a');
    lruGet(cache, 'missing');
  } finally {
    unsubscribe('lru-cache:metrics', listen);
  }
  assert.equal(seen.length, 2);
  assert.notEqual(seen[0], seen[1], 'two statuses, not one reused');
  assert.deepEqual([seen[0].key, seen[0].value, seen[1].key, seen[1].get], ['a', 1, 'missing', 'miss']);
  // and once no one listens, no status is made at all: the shared options carry none
  assert.equal(lruGet(cache, 'a'), 1);
});
