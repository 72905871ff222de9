// The answer cache in front of a table: a wildcard's change re-answers the cached names it
// affects before the next query, however many names are cached, evicted or change at once.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerCache, type Resolution } from '../src/table/answer-cache.js';
import { memoryTable } from './helpers/tables.js';
import { redisTable } from './helpers/tables.js';
import type { EntryData } from '../src/entry/entry.js';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.js';

const data = (address: string): EntryData => ({ a: [address], aaaa: [], ttl: 30 });

/** The entry that answers, as the query path sees it (null: forwarded). */
async function owner(cache: AnswerCache, name: string): Promise<string | null> {
  const answers: Resolution = await cache.resolve(name);
  return answers === null ? null : (answers.owner ?? null);
}

describe('answer cache and wildcards', () => {
  test('a wildcard change re-answers the names cached under it, after evictions too; names with their own entry keep it', async (t) => {
    const table = memoryTable();
    // far fewer slots than names: most names are evicted and cached again on the way
    const cache = new AnswerCache(table, { maxNames: 50 });
    t.after(() => cache.close());
    await table.put('*.w.test', data('192.0.2.1'));
    for (let i = 0; i < 10; i++) await table.put(`own${i}.w.test`, data('192.0.2.9'));
    const names = Array.from({ length: 200 }, (_, i) => `d${i}.x.w.test`);
    for (const name of names) assert.equal(await owner(cache, name), '*.w.test', name);
    for (let i = 0; i < 10; i++) assert.equal(await owner(cache, `own${i}.w.test`), `own${i}.w.test`);

    // a closer wildcard takes over every name below it, cached (the last 50, asked first) or not
    await table.put('*.x.w.test', data('192.0.2.2'));
    for (const name of [...names].reverse()) assert.equal(await owner(cache, name), '*.x.w.test', name);

    // many wildcards in one import, each taking over the names cached below it
    for (let i = 0; i < 200; i++) assert.equal(await owner(cache, `a.n${i}.w.test`), '*.w.test');
    await table.importEntries(new Map(Array.from({ length: 200 }, (_, i) => [`*.n${i}.w.test`, data('192.0.2.3')])));
    for (let i = 199; i >= 0; i--) assert.equal(await owner(cache, `a.n${i}.w.test`), `*.n${i}.w.test`);

    // gone: the names it answered are forwarded; the others keep their answers
    for (let i = 0; i < 40; i++) assert.equal(await owner(cache, `n${i}.w.test`), '*.w.test');
    await table.delete('*.w.test');
    for (let i = 39; i >= 0; i--) assert.equal(await owner(cache, `n${i}.w.test`), null);
    for (let i = 0; i < 10; i++) assert.equal(await owner(cache, `own${i}.w.test`), `own${i}.w.test`);
    assert.equal(await owner(cache, names[0]), '*.x.w.test');
  });

  describe('with Redis, where "not intercepted" is cached too', () => {
    let redis: { url: string; stop(): Promise<void> };
    before(async () => {
      redis = await testRedis();
    });
    after(async () => {
      await redis.stop();
    });

    test('a wildcard added takes over the names cached as not intercepted below it', async (t) => {
      const prefix = uniquePrefix('cache');
      t.after(() => dropPrefix(redis.url, prefix));
      // without the name filter every lookup reads Redis, so absent names are cached as such
      const table = await redisTable({ url: redis.url, prefix, nameFilter: false });
      t.after(() => table.close());
      const cache = new AnswerCache(table, { maxNames: 20 });
      t.after(() => cache.close());
      // more names than slots; the last asked (still cached) are asked first after each change
      const names = Array.from({ length: 60 }, (_, i) => `h${i}.nf.test`);
      for (const name of names) assert.equal(await owner(cache, name), null, name);
      await table.put('*.nf.test', data('192.0.2.4'));
      for (const name of [...names].reverse()) assert.equal(await owner(cache, name), '*.nf.test', name);
      await table.delete('*.nf.test');
      for (const name of names) assert.equal(await owner(cache, name), null, name);
    });
  });
});
