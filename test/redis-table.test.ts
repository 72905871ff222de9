// RedisTable on one redis-server and through Sentinel: changes between processes, resync,
// the reverse index, history storage, and the key layout other tools may rely on.

import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { isDivertError } from '../src/errors.js';
import { redisTable } from './helpers/tables.js';
import type { EntryData } from '../src/entry/entry.js';
import { dropPrefix, freePort, startRedis, startRedisSentinel, testRedis, uniquePrefix } from './helpers/redis.js';
import { eventually, sharedStoreSuite, watch } from './redis-scenarios.js';

const data = (a: string[], aaaa: string[] = []): EntryData => ({ a, aaaa, ttl: 30 });

let redis: { url: string; stop(): Promise<void> };
before(async () => {
  redis = await testRedis();
});
after(async () => {
  await redis.stop();
});

sharedStoreSuite('one server', () => ({ url: redis.url, nodes: [redis.url], dropPrefix: (p) => dropPrefix(redis.url, p) }));

describe('RedisTable on one server', () => {
  const fresh = (t: TestContext) => {
    const prefix = uniquePrefix('redis');
    t.after(() => dropPrefix(redis.url, prefix));
    return prefix;
  };
  const raw = (t: TestContext, url = redis.url) => {
    const client = new Redis(url);
    t.after(() => client.disconnect());
    return client;
  };

  it('keeps entries, sequence, history and index under <prefix>{table}:', async (t) => {
    const prefix = fresh(t);
    const table = await redisTable({ url: redis.url, prefix, now: () => new Date('2024-01-02T03:04:05.000Z') });
    t.after(() => table.close());
    const entry = await table.put('k.test', data([]), { by: 'who "quoted" /slash' });
    await table.put('k.test', data(['192.0.2.1']));
    const client = raw(t);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', `${prefix}*`);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
    assert.deepEqual(keys.sort(), [
      `${prefix}{table}:addr:192.0.2.1`,
      `${prefix}{table}:entries`,
      `${prefix}{table}:history:k.test`,
      `${prefix}{table}:indexed`,
      `${prefix}{table}:seq`,
    ]);
    assert.equal(await client.get(`${prefix}{table}:seq`), '2');
    const history = await client.lrange(`${prefix}{table}:history:k.test`, 0, -1);
    assert.equal(history.length, 2);
    // Built by hand in Lua: empty lists must stay [] (cjson would write {}).
    assert.deepEqual(JSON.parse(history[1]), {
      version: entry.version,
      at: '2024-01-02T03:04:05.000Z',
      op: 'put',
      by: 'who "quoted" /slash',
      old: null,
      new: { a: [], aaaa: [], ttl: 30 },
    });
    assert.match(history[0], /"old":\{"a":\[\],"aaaa":\[\],"ttl":30\}/);
    assert.match(history[0], /"new":\{"a":\["192\.0\.2\.1"\],"aaaa":\[\],"ttl":30\}/);
    assert.equal((await table.history('k.test'))[1].by, 'who "quoted" /slash');
    // the entry keeps the last author too: the second put named none
    assert.deepEqual(JSON.parse((await client.hget(`${prefix}{table}:entries`, 'k.test')) as string), {
      a: ['192.0.2.1'],
      aaaa: [],
      ttl: 30,
      version: 2,
      updatedAt: '2024-01-02T03:04:05.000Z',
      updatedBy: 'unknown',
    });
  });

  it('indexes, on connect, entries written before the index existed', async (t) => {
    const prefix = fresh(t);
    const client = raw(t);
    // as an older divert stored them: entries and seq only
    const stored = (a: string[], version: number) =>
      JSON.stringify({ a, aaaa: [], ttl: 30, version, updatedAt: '2024-01-01T00:00:00.000Z' });
    await client.hset(
      `${prefix}{table}:entries`,
      'old1.test',
      stored(['192.0.2.1'], 1),
      'old2.test',
      stored(['192.0.2.1', '192.0.2.2'], 2),
    );
    await client.set(`${prefix}{table}:seq`, '2');
    const table = await redisTable({ url: redis.url, prefix });
    t.after(() => table.close());
    // written before entries kept their last author: they read as they did, without one
    const old = { name: 'old1.test', a: ['192.0.2.1'], aaaa: [], ttl: 30, version: 1, updatedAt: '2024-01-01T00:00:00.000Z' };
    assert.deepEqual(await table.get('old1.test'), old);
    assert.deepEqual((await table.list({ prefix: 'old1', limit: 10 })).entries, [old]);
    const changed = (await table.divert('192.0.2.1', '192.0.2.7', { by: 'operator-b' })).changed;
    assert.deepEqual(
      changed.map((e) => [e.name, e.a, e.version, e.updatedBy]),
      [
        ['old1.test', ['192.0.2.7'], 3, 'operator-b'],
        ['old2.test', ['192.0.2.7', '192.0.2.2'], 4, 'operator-b'],
      ],
    );
    assert.equal((await table.get('old2.test'))?.updatedBy, 'operator-b');
    // the marker stops a second build: a member added by hand is not re-derived
    await client.srem(`${prefix}{table}:addr:192.0.2.2`, 'old2.test');
    const again = await redisTable({ url: redis.url, prefix });
    t.after(() => again.close());
    assert.deepEqual((await again.divert('192.0.2.2', '192.0.2.8')).changed, []);
  });

  it('tells listeners to resync after redis-server restarts, then receives again', async (t) => {
    const server = await startRedis();
    t.after(() => server.stop());
    const prefix = uniquePrefix('restart');
    const writer = await redisTable({ url: server.url, prefix });
    const reader = await redisTable({ url: server.url, prefix });
    t.after(() => Promise.all([writer.close(), reader.close()]));
    const r = watch(reader);
    await server.kill();
    await sleep(100);
    await server.restart();
    await eventually('resync after restart', 5000, () => r.resyncs >= 1);
    let entry;
    for (const deadline = Date.now() + 5000; ; await sleep(100)) {
      try {
        entry = await writer.put('back.test', data(['192.0.2.1']));
        break;
      } catch (err) {
        if (!isDivertError(err, 'BACKEND_UNAVAILABLE') || Date.now() > deadline) throw err;
      }
    }
    await eventually('change after restart', 1000, () => r.events.length === 1);
    assert.deepEqual(r.events[0].entry, entry);
  });

  it('reports a lost change feed once, and never crashes on it', async (t) => {
    const server = await startRedis();
    t.after(() => server.stop());
    const errors: Error[] = [];
    const table = await redisTable({ url: server.url, prefix: uniquePrefix('lost'), onError: (e) => errors.push(e) });
    t.after(() => table.close());
    const seen = watch(table);
    await server.kill();
    await sleep(1500); // several reconnect attempts of both connections
    await server.restart();
    await eventually('resync', 5000, () => seen.resyncs >= 1);
    const feed = errors.filter((e) => /change feed/.test(e.message));
    assert.ok(feed.length <= 1, errors.map((e) => e.message).join('\n'));
    assert.ok(errors.every((e) => isDivertError(e, 'BACKEND_UNAVAILABLE')));
  });
});

describe('RedisTable with writes of many names', () => {
  const fresh = (t: TestContext) => {
    const prefix = uniquePrefix('many');
    t.after(() => dropPrefix(redis.url, prefix));
    return prefix;
  };
  // one Lua script writes them all: a command timeout that fits it, for a busy test machine
  const open = async (t: TestContext, prefix: string) => {
    const table = await redisTable({ url: redis.url, prefix, commandTimeoutMs: 60_000 });
    t.after(() => table.close());
    return table;
  };
  const names = (count: number, label: string) => Array.from({ length: count }, (_, i) => `n${i}.${label}.test`);

  it('an import of 12,000 names tells its own listeners of each change once, though its messages come back too', async (t) => {
    const table = await open(t, fresh(t));
    const told = new Map<number, number>();
    table.onChange((event) => told.set(event.version, (told.get(event.version) ?? 0) + 1));
    const written = await table.importEntries(
      new Map(names(12_000, 'import').map((name, i) => [name, data([`10.0.${i >> 8}.${i & 255}`])])),
    );
    await table.redis.barrier(); // every change message of the import has come back on the feed
    assert.equal(written.length, 12_000);
    assert.deepEqual(
      [...told.keys()].sort((x, y) => x - y),
      written.map((entry) => entry.version).sort((x, y) => x - y),
    );
    const twice = [...told].filter(([, times]) => times > 1);
    assert.equal(twice.length, 0, `${twice.length} changes told more than once, e.g. version ${twice[0]?.[0]}`);
  });

  it('a seed of 100,000 names, as a restart with a large zone folder sends, inserts the one the table lacks', async (t) => {
    const prefix = fresh(t);
    const table = await open(t, prefix);
    // the table holds all but the last already (written directly: a seed of them all would take long)
    const all = names(100_000, 'seed');
    const client = new Redis(redis.url);
    t.after(() => client.disconnect());
    const stored = JSON.stringify({ a: ['192.0.2.1'], aaaa: [], ttl: 30, version: 1, updatedAt: '2024-01-01T00:00:00.000Z' });
    for (let i = 0; i < all.length - 1; i += 10_000) {
      await client.hset(
        `${prefix}{table}:entries`,
        Object.fromEntries(all.slice(i, Math.min(i + 10_000, all.length - 1)).map((name) => [name, stored])),
      );
    }
    const inserted = await table.seed(new Map(all.map((name) => [name, data(['192.0.2.2'])])));
    assert.deepEqual(
      inserted.map((entry) => [entry.name, entry.a]),
      [[all[all.length - 1], ['192.0.2.2']]],
    );
    assert.equal(await table.size(), all.length);
  });
});

describe('RedisTable through Sentinel', () => {
  it('finds the master by name, with the master password, and shares changes', async (t) => {
    const sentinel = await startRedisSentinel({ password: 'p@ss/word' });
    t.after(() => sentinel.stop());
    const prefix = uniquePrefix('sentinel');
    const first = await redisTable({ url: sentinel.url, prefix });
    const second = await redisTable({ url: sentinel.url, prefix });
    t.after(() => Promise.all([first.close(), second.close()]));
    const s = watch(second);
    const entry = await first.put('s.test', data(['192.0.2.1']));
    assert.deepEqual(await second.get('s.test'), entry);
    await eventually('change via sentinel master', 1000, () => s.events.length === 1);
    assert.deepEqual(s.events[0].entry, entry);
    const client = new Redis(sentinel.master.url);
    t.after(() => client.disconnect());
    assert.ok(await client.hexists(`${prefix}{table}:entries`, 's.test'));
  });

  it('fails with BACKEND_UNAVAILABLE and a masked password when the master password is wrong', async (t) => {
    const sentinel = await startRedisSentinel({ password: 'right' });
    t.after(() => sentinel.stop());
    const url = sentinel.url.replace(':right@', ':wrong-pw@');
    await assert.rejects(redisTable({ url, prefix: 'x:', connectTimeoutMs: 500 }), (err: unknown) => {
      assert.ok(isDivertError(err, 'BACKEND_UNAVAILABLE'));
      assert.ok(!err.message.includes('wrong-pw'), err.message);
      assert.match(err.message, /redis-sentinel:\/\/:\*\*\*@127\.0\.0\.1:\d+\/mymaster/);
      return true;
    });
  });
});

describe('RedisTable.connect with Sentinel and Cluster URLs', () => {
  it('gives up on dead Sentinels and cluster nodes in time, hiding the password', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    for (const url of [
      `redis-sentinel://:s3cret@127.0.0.1:${p1},127.0.0.1:${p2}/mymaster`,
      `redis-cluster://:s3cret@127.0.0.1:${p1},127.0.0.1:${p2}`,
    ]) {
      const started = Date.now();
      await assert.rejects(redisTable({ url, prefix: 'x:', connectTimeoutMs: 300 }), (err: unknown) => {
        assert.ok(isDivertError(err, 'BACKEND_UNAVAILABLE'), String(err));
        assert.ok(!err.message.includes('s3cret'), err.message);
        assert.ok(err.message.includes(url.replace('s3cret', '***')), err.message);
        return true;
      });
      assert.ok(Date.now() - started < 1300, `${url}: took ${Date.now() - started} ms`);
    }
  });

  it('refuses a malformed URL with BAD_CONFIG before connecting', async () => {
    await assert.rejects(
      redisTable({ url: 'redis-sentinel://:s3cret@127.0.0.1:1', prefix: 'x:' }),
      (err: unknown) => isDivertError(err, 'BAD_CONFIG') && !err.message.includes('s3cret') && /master name/.test(err.message),
    );
  });
});
