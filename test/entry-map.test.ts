// The in-process tables' entries (src/table/table.ts EntryMap): a name is answered by its
// own entry or its nearest wildcard's, however wildcards come and go; without any
// wildcard the name alone is looked at.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntryMap } from '../src/table/table.js';
import type { Entry } from '../src/entry/entry.js';

const entry = (name: string): Entry => ({ name, a: ['192.0.2.1'], aaaa: [], ttl: 60, version: 1, updatedAt: new Date(0).toISOString() });
const answering = (map: EntryMap, name: string) => map.lookupName(name)?.name ?? null;

test('a name is answered by its own entry, else by its nearest wildcard, and by nothing once the wildcards are gone', () => {
  const map = new EntryMap();
  map.set('www.shop.test', entry('www.shop.test'));
  assert.equal(answering(map, 'www.shop.test'), 'www.shop.test');
  assert.equal(answering(map, 'img.shop.test'), null);

  map.set('*.shop.test', entry('*.shop.test'));
  map.set('*.test', entry('*.test'));
  assert.equal(answering(map, 'img.shop.test'), '*.shop.test');
  assert.equal(answering(map, 'a.b.shop.test'), '*.shop.test');
  assert.equal(answering(map, 'other.test'), '*.test');
  assert.equal(answering(map, 'www.shop.test'), 'www.shop.test', 'its own entry before any wildcard');

  // replaced, then deleted: counted once
  map.set('*.shop.test', entry('*.shop.test'));
  map.delete('*.shop.test');
  assert.equal(answering(map, 'img.shop.test'), '*.test');
  map.delete('*.test');
  assert.equal(answering(map, 'img.shop.test'), null);
  assert.equal(map.delete('*.test'), false);

  map.set('*.shop.test', entry('*.shop.test'));
  assert.equal(answering(map, 'img.shop.test'), '*.shop.test', 'a wildcard added after the count fell to 0');
  map.clear();
  map.set('*.other.test', entry('*.other.test'));
  assert.equal(answering(map, 'x.other.test'), '*.other.test', 'counting starts again after clear()');
  assert.equal(answering(map, 'img.shop.test'), null);
});
