// The name filter of RedisTable, checked through Redis itself: lookups of names the table
// does not hold send no command, and the filter follows other replicas' writes, writes
// racing with its load, and changes whose messages were lost (resync).

import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { isDivertError } from '../src/errors.js';
import { inspect } from '../src/debug.js';
import { AnswerCache } from '../src/table/answer-cache.js';
import { redisTable, type RedisTable } from './helpers/tables.js';
import type { OpenRedisOptions } from '../src/table/redis/open-redis.js';
import { type EntryData } from '../src/entry/entry.js';
import { startRedis, uniquePrefix, type RedisProcess } from './helpers/redis.js';
import { eventually } from './redis-scenarios.js';
import { loadNames, millionName } from '../bench/million-names.js';

const data = (a: string): EntryData => ({ a: [a], aaaa: [], ttl: 30 });

async function server(t: TestContext, options: { persist?: boolean } = {}): Promise<RedisProcess> {
  const redis = await startRedis(options);
  t.after(() => redis.stop());
  return redis;
}

async function open(t: TestContext, url: string, prefix: string, options: Partial<OpenRedisOptions> = {}): Promise<RedisTable> {
  const table = await redisTable({ url, prefix, ...options });
  t.after(() => table.close());
  return table;
}

function inspector(t: TestContext, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  return client;
}

/** How often the server has run `command` (INFO commandstats). */
async function calls(client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats');
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

/** The name the table answers `name` with, awaiting Redis when it has to. */
async function answer(table: RedisTable, name: string): Promise<string | null> {
  return (await table.lookupName(name))?.name ?? null;
}

/** An entry as RedisTable stores it, written behind the table's back: no change message. */
async function writeSilently(client: Redis, prefix: string, name: string, a: string): Promise<void> {
  const version = await client.incr(`${prefix}{table}:seq`);
  const stored = JSON.stringify({ a: [a], aaaa: [], ttl: 30, version, updatedAt: new Date().toISOString() });
  await client.hset(`${prefix}{table}:entries`, name, stored);
}

describe('RedisTable name filter', () => {
  it('answers names the table lacks without a Redis command, and still finds the others', async (t) => {
    const redis = await server(t);
    const prefix = uniquePrefix('filter');
    const table = await open(t, redis.url, prefix);
    await table.put('present.test', data('192.0.2.1'));
    await table.put('*.wild.test', data('192.0.2.2'));
    assert.equal(inspect(table.redis).ready, false);
    // Before the filter is there, lookups read Redis as they always did.
    assert.equal(await answer(table, 'present.test'), 'present.test');
    assert.equal(await table.redis.loadFilter(), true);
    assert.equal(inspect(table.redis).ready, true);
    assert.equal(inspect(table.redis).size, 2);

    const client = inspector(t, redis.url);
    const before = await calls(client, 'hmget');
    assert.ok(before >= 1);
    for (let i = 0; i < 1000; i++) {
      const result = table.lookupName(`absent-${i}.example.org`);
      assert.equal(result, null, 'a plain null, not a promise');
    }
    assert.equal(table.lookupName('wild.test'), null, 'a wildcard does not cover its parent');
    assert.equal(await calls(client, 'hmget'), before, 'no HMGET for absent names');
    assert.ok(inspect(table.redis).skips >= 1001);

    assert.equal(await answer(table, 'present.test'), 'present.test');
    assert.equal(await answer(table, 'a.b.wild.test'), '*.wild.test');
    assert.equal(await calls(client, 'hmget'), before + 2);

    // The answer cache in front of it resolves absent names synchronously too.
    const cache = new AnswerCache(table, { maxNames: 100 });
    t.after(() => cache.close());
    assert.equal(cache.resolve('never.example.org'), null);
    assert.ok((await cache.resolve('x.wild.test')) !== null);
    assert.equal(await calls(client, 'hmget'), before + 3);
  });

  it('reads Redis for every lookup when turned off', async (t) => {
    const redis = await server(t);
    const table = await open(t, redis.url, uniquePrefix('nofilter'), { nameFilter: false });
    const client = inspector(t, redis.url);
    const before = await calls(client, 'hmget');
    for (let i = 0; i < 10; i++) assert.equal(await answer(table, `absent-${i}.example.org`), null);
    assert.equal(await calls(client, 'hmget'), before + 10);
    assert.equal(inspect(table.redis).ready, false);
  });

  it("follows another replica's writes and deletes", async (t) => {
    const redis = await server(t);
    const prefix = uniquePrefix('replica');
    const writer = await open(t, redis.url, prefix);
    const reader = await open(t, redis.url, prefix);
    await reader.redis.loadFilter();
    assert.equal(reader.lookupName('new.test'), null);

    await writer.put('new.test', data('192.0.2.1'));
    await eventually('new.test on the other replica', 2000, async () => (await answer(reader, 'new.test')) === 'new.test');
    await writer.put('*.wc.test', data('192.0.2.2'));
    await eventually('*.wc.test on the other replica', 2000, async () => (await answer(reader, 'deep.x.wc.test')) === '*.wc.test');
    assert.equal(inspect(reader.redis).size, 2);

    await writer.delete('new.test');
    await eventually('new.test gone on the other replica', 2000, () => inspect(reader.redis).size === 1);
    assert.equal(reader.lookupName('new.test'), null, 'answered by the filter again');
    assert.equal(await answer(reader, 'other.wc.test'), '*.wc.test');
  });

  it('holds the names written and not the names deleted while it was loading', async (t) => {
    const redis = await server(t);
    const prefix = uniquePrefix('race');
    const writer = await open(t, redis.url, prefix, { commandTimeoutMs: 10_000 });
    const seeded: string[] = [];
    for (let batch = 0; batch < 6; batch++) {
      const entries = new Map<string, EntryData>();
      for (let i = 0; i < 10_000; i++) {
        const n = batch * 10_000 + i;
        entries.set(`n${n}.seeded.test`, data(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`));
      }
      await writer.importEntries(entries);
      seeded.push(...entries.keys());
    }
    const reader = await open(t, redis.url, prefix);
    const loaded = reader.redis.loadFilter();
    let done = false;
    void loaded.then(() => (done = true));
    const written: string[] = [];
    const deleted: string[] = [];
    let duringLoad = 0;
    for (let i = 0; !done || i < 50; i++) {
      const name = `late${i}.race.test`;
      await writer.put(name, data('192.0.2.9'));
      written.push(name);
      await writer.delete(seeded[i * 7]);
      deleted.push(seeded[i * 7]);
      if (!done) duringLoad++;
    }
    assert.equal(await loaded, true);
    assert.ok(duringLoad > 0, 'no write happened during the load: nothing was tested');
    const last = written[written.length - 1];
    await eventually('the last write reached the reader', 2000, async () => (await answer(reader, last)) === last);
    for (const name of written) assert.equal(await answer(reader, name), name);
    // A name deleted during the scan may leave a stale fingerprint: it then costs a read that finds nothing.
    for (const name of deleted) assert.equal(await answer(reader, name), null);
    assert.equal(await answer(reader, seeded[seeded.length - 1]), seeded[seeded.length - 1]);
    const stale = inspect(reader.redis).size - (seeded.length - deleted.length + written.length);
    assert.ok(stale >= 0 && stale <= deleted.length, `${stale} stale fingerprints`);
    t.diagnostic(`${duringLoad} writes during the load, ${stale} stale fingerprints`);
  });

  it('rebuilds after redis-server restarts, finding names whose change messages were lost', async (t) => {
    const redis = await server(t, { persist: true });
    const prefix = uniquePrefix('rebuild');
    const errors: Error[] = [];
    const reader = await open(t, redis.url, prefix, { onError: (e) => errors.push(e) });
    const cache = new AnswerCache(reader, { maxNames: 100 });
    t.after(() => cache.close());
    await reader.put('kept.test', data('192.0.2.1'));
    await reader.redis.loadFilter();
    const client = inspector(t, redis.url);
    await writeSilently(client, prefix, 'lost.test', '192.0.2.7');
    // The filter never heard of it, so neither the table nor the cache finds it yet.
    assert.equal(reader.lookupName('lost.test'), null);
    assert.equal(cache.resolve('lost.test'), null);

    // A query right after the resync, while the filter is being rebuilt, is answered from
    // the old filter and cached: the rebuild must make the cache read again.
    let probe: unknown = 'not yet';
    reader.onResync(() => {
      if (probe === 'not yet') probe = cache.resolve('lost.test');
    });

    await redis.kill();
    // Redis away: absent names are still answered at once; present ones need Redis.
    assert.equal(reader.lookupName('elsewhere.example.org'), null);
    await assert.rejects(Promise.resolve(reader.lookupName('kept.test')), (err) => isDivertError(err, 'BACKEND_UNAVAILABLE'));
    await sleep(200);
    await redis.restart();

    // Another replica writes as soon as Redis is back, maybe before this one reconnected.
    const writer = await open(t, redis.url, prefix);
    await writer.put('after.test', data('192.0.2.8'));

    await eventually('filter rebuilt', 10_000, () => inspect(reader.redis).loads >= 2);
    assert.equal(probe, null);
    await eventually('lost.test through the cache', 5000, async () => (await cache.resolve('lost.test')) !== null);
    assert.equal(await answer(reader, 'lost.test'), 'lost.test');
    assert.equal(await answer(reader, 'after.test'), 'after.test');
    assert.equal(await answer(reader, 'kept.test'), 'kept.test');
    assert.ok(
      errors.every((e) => isDivertError(e, 'BACKEND_UNAVAILABLE')),
      errors.map((e) => e.message).join('\n'),
    );
  });

  it('rebuilds when only the change feed was dropped', async (t) => {
    const redis = await server(t);
    const prefix = uniquePrefix('feed');
    const reader = await open(t, redis.url, prefix);
    await reader.redis.loadFilter();
    const client = inspector(t, redis.url);
    await writeSilently(client, prefix, 'silent.test', '192.0.2.5');
    assert.equal(reader.lookupName('silent.test'), null);
    const resyncs: number[] = [];
    reader.onResync(() => resyncs.push(Date.now()));
    await client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await eventually('filter rebuilt', 5000, () => inspect(reader.redis).loads >= 2);
    assert.equal(await answer(reader, 'silent.test'), 'silent.test');
    // once for the lost feed, once more because the rebuilt filter holds a name the old one lacked
    assert.equal(resyncs.length, 2);
  });

  it('keeps reading Redis until a failed load succeeds on retry', async (t) => {
    const redis = await server(t);
    const prefix = uniquePrefix('retry');
    const errors: Error[] = [];
    const table = await open(t, redis.url, prefix, { onError: (e) => errors.push(e) });
    await table.put('there.test', data('192.0.2.1'));
    await redis.kill();
    assert.equal(await table.redis.loadFilter(), false);
    assert.equal(inspect(table.redis).ready, false);
    const filterErrors = () => errors.filter((e) => /name filter/.test(e.message));
    assert.equal(filterErrors().length, 1);
    assert.ok(isDivertError(filterErrors()[0], 'BACKEND_UNAVAILABLE'));
    await sleep(1500); // a retry or two, failing too: reported once
    assert.equal(filterErrors().length, 1);
    await redis.restart();
    await eventually('filter loaded after retry', 10_000, () => inspect(table.redis).ready);
    const entry = await table.lookupName('there.test');
    assert.equal(entry, null, 'not persisted: the restarted server is empty');
  });

  it("bench's loadNames writes what importEntries writes", async (t) => {
    const redis = await server(t);
    const fast = uniquePrefix('fast');
    const slow = uniquePrefix('slow');
    const count = 30;
    const names = Array.from({ length: count }, (_, i) => millionName(i));
    const addresses = (i: number) => `10.0.0.${i}`;
    const writer = await open(t, redis.url, slow);
    for (let round = 0; round < 2; round++) {
      // the second round replaces existing names: loadNames then goes through importEntries itself
      await loadNames(redis.url, fast, count);
      await writer.importEntries(new Map(names.map((n, i) => [n, { a: [addresses(i)], aaaa: [], ttl: 300 }])), { by: 'bench' });
    }
    const client = inspector(t, redis.url);
    const times = (text: string) => text.replace(/"(updatedAt|at)":"[^"]+"/g, '"$1":"T"');
    const dump = async (prefix: string) => {
      const base = `${prefix}{table}:`;
      const entries = await client.hgetall(`${base}entries`);
      const out: Record<string, unknown> = { seq: await client.get(`${base}seq`), indexed: await client.get(`${base}indexed`) };
      for (const name of names) {
        const entry = JSON.parse(entries[name]) as { a: string[] };
        out[name] = times(entries[name]);
        out[`history:${name}`] = (await client.lrange(`${base}history:${name}`, 0, -1)).map(times);
        out[`addr:${name}`] = await client.smembers(`${base}addr:${entry.a[0]}`);
      }
      return out;
    };
    assert.deepEqual(await dump(fast), await dump(slow));
    const reader = await open(t, redis.url, fast);
    await reader.redis.loadFilter();
    assert.equal(inspect(reader.redis).size, count);
    assert.equal((await reader.lookupName(millionName(7)))?.a[0], '10.0.0.7');
  });
});
