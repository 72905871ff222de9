// Two `divert serve` processes on one Redis: a change through either admin port reaches
// the other's clients at once, a restarted replica serves the current table, and a Redis
// crash and restart loses no acknowledged write while both keep serving and converge.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, startRedisCluster, uniquePrefix } from './helpers/redis.js';
import { runDivert, type DivertProcess } from './helpers/process.js';

const TOKEN = 'replica-test-token-0123456789';

interface Replica {
  process: DivertProcess;
  resolver: Resolver;
  put(name: string, a: string[]): Promise<Response>;
  get(name: string): Promise<Response>;
  post(path: string, body: string, contentType?: string): Promise<Response>;
}

async function startReplica(redis: { url: string }, prefix: string): Promise<Replica> {
  const process = runDivert([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--admin',
    '127.0.0.1:0',
    '--admin-token',
    TOKEN,
    '--upstream',
    '127.0.0.1:9',
    '--query-timeout-ms',
    '200',
    '--redis',
    redis.url,
    '--redis-prefix',
    prefix,
  ]);
  const dnsPort = await process.listening();
  const line = process
    .stdout()
    .split('\n')
    .find((l) => l.includes('"listening on'))!;
  const admin = `http://${JSON.parse(line).admin as string}`;
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dnsPort}`]);
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  return {
    process,
    resolver,
    put: (name, a) => fetch(`${admin}/v1/names/${name}`, { method: 'PUT', headers, body: JSON.stringify({ a }) }),
    get: (name) => fetch(`${admin}/v1/names/${name}`, { headers }),
    post: (path, body, contentType = 'application/json') =>
      fetch(admin + path, { method: 'POST', headers: { ...headers, 'content-type': contentType }, body }),
  };
}

/** Polls until `name` answers `expected`; returns the milliseconds it took. */
async function untilAnswers(resolver: Resolver, name: string, expected: string[], timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last: unknown;
  while (Date.now() - started < timeoutMs) {
    try {
      last = (await resolver.resolve4(name)).sort();
      if (JSON.stringify(last) === JSON.stringify([...expected].sort())) return Date.now() - started;
    } catch (err) {
      last = err;
    }
    await sleep(2);
  }
  throw new Error(`${name} answered ${JSON.stringify(last)}, not ${expected} within ${timeoutMs} ms`);
}

describe('replicas on one Redis', () => {
  test('a change through A is answered by B within 100 ms, also for a name B had cached', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const prefix = uniquePrefix('replicas');
    const a = await startReplica(redis, prefix);
    t.after(() => a.process.stop());
    const b = await startReplica(redis, prefix);
    t.after(() => b.process.stop());

    assert.equal((await a.put('www.shop.test', ['192.0.2.1'])).status, 200);
    await untilAnswers(b.resolver, 'www.shop.test', ['192.0.2.1'], 1000); // now cached by B
    for (let i = 2; i <= 6; i++) {
      const written = Date.now();
      assert.equal((await a.put('www.shop.test', [`192.0.2.${i}`])).status, 200);
      await untilAnswers(b.resolver, 'www.shop.test', [`192.0.2.${i}`], 100);
      t.diagnostic(`change ${i - 1}: B answered ${Date.now() - written} ms after the write was sent`);
    }
    // and the other way round
    assert.equal((await b.put('www.shop.test', ['198.51.100.1'])).status, 200);
    await untilAnswers(a.resolver, 'www.shop.test', ['198.51.100.1'], 100);
  });

  test('B restarted while changes happen catches up', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const prefix = uniquePrefix('restart');
    const a = await startReplica(redis, prefix);
    t.after(() => a.process.stop());
    let b = await startReplica(redis, prefix);
    for (let i = 0; i < 5; i++) await a.put(`n${i}.shop.test`, ['192.0.2.1']);
    for (let i = 0; i < 5; i++) await untilAnswers(b.resolver, `n${i}.shop.test`, ['192.0.2.1'], 1000);

    const stopping = b.process.stop();
    let writes = 0;
    const writer = (async () => {
      for (; writes < 40; writes++) {
        assert.equal((await a.put(`n${writes % 5}.shop.test`, [`198.51.100.${writes + 1}`])).status, 200);
        await sleep(10);
      }
    })();
    await stopping;
    b = await startReplica(redis, prefix);
    t.after(() => b.process.stop());
    await writer;
    for (let i = 0; i < 5; i++) {
      const last = Math.max(...Array.from({ length: 40 }, (_, w) => w).filter((w) => w % 5 === i));
      await untilAnswers(b.resolver, `n${i}.shop.test`, [`198.51.100.${last + 1}`], 1000);
    }
  });

  test('Redis killed and restarted while both serve: no acknowledged write lost, both converge', async (t) => {
    const redis = await startRedis({ persist: true });
    t.after(() => redis.stop());
    const prefix = uniquePrefix('crash');
    const a = await startReplica(redis, prefix);
    t.after(() => a.process.stop());
    const b = await startReplica(redis, prefix);
    t.after(() => b.process.stop());

    const acknowledged = new Map<string, string>();
    // a write refused because Redis died may still have been applied (the reply was lost):
    // a name may hold its last acknowledged address or one tried after it, nothing older
    const triedSince = new Map<string, Set<string>>();
    let refused = 0;
    let writing = true;
    const writer = async (replica: Replica, side: string) => {
      for (let i = 0; writing; i++) {
        const name = `w${i % 30}.${side}.crash.test`;
        const address = `10.${side === 'a' ? 1 : 2}.${(i >> 8) & 255}.${i & 255}`;
        if (!triedSince.has(name)) triedSince.set(name, new Set());
        triedSince.get(name)!.add(address);
        try {
          const response = await replica.put(name, [address]);
          if (response.status === 200) {
            acknowledged.set(name, address);
            triedSince.set(name, new Set([address]));
          } else {
            assert.equal(response.status, 503, 'a write is acknowledged or refused with 503');
            refused++;
          }
          await response.body?.cancel();
        } catch {
          refused++;
        }
        await sleep(3);
      }
    };
    const writers = Promise.all([writer(a, 'a'), writer(b, 'b')]);
    await sleep(300);
    const beforeCrash = acknowledged.size;
    await redis.kill();
    // A write each replica takes while Redis is down is refused (503), and changes nothing
    // (the name is never written again). The writers alone may not meet the outage: a write
    // already sent when Redis died is resent on reconnect, and can be acknowledged then.
    for (const [replica, side] of [
      [a, 'a'],
      [b, 'b'],
    ] as const) {
      const name = `outage.${side}.crash.test`;
      for (const deadline = Date.now() + 3000; ; await sleep(20)) {
        const response = await replica.put(name, ['192.0.2.99']).catch(() => null);
        await response?.body?.cancel();
        if (response?.status === 503) break;
        if (Date.now() > deadline)
          assert.fail(`${side}: no write refused within 3 s of Redis dying (last: ${response?.status ?? 'no reply'})`);
      }
      refused++;
    }
    await sleep(300);
    await redis.restart();
    // keep writing until both replicas have had writes acknowledged again
    const backBy = Date.now() + 10_000;
    const acknowledgedAtRestart = new Map(acknowledged);
    while ([...acknowledged].filter(([n, v]) => acknowledgedAtRestart.get(n) !== v).length < 10 && Date.now() < backBy) await sleep(50);
    await sleep(300);
    writing = false;
    await writers;
    t.diagnostic(
      `${beforeCrash} names acknowledged before the crash, ${acknowledged.size} in all; ${refused} writes refused during the outage`,
    );
    assert.ok(refused > 0, 'some writes met the outage');

    const read = async (replica: Replica, name: string): Promise<string[]> => {
      for (const deadline = Date.now() + 5000; ; await sleep(50)) {
        const response = await replica.get(name);
        if (response.status === 200) return ((await response.json()) as { a: string[] }).a;
        await response.body?.cancel();
        if (Date.now() > deadline) throw new Error(`${name}: HTTP ${response.status} 5 s after Redis came back`);
      }
    };
    for (const side of ['a', 'b']) {
      const response = await a.get(`outage.${side}.crash.test`);
      await response.body?.cancel();
      assert.equal(response.status, 404, 'the write refused during the outage was not applied');
    }
    for (const name of acknowledged.keys()) {
      const stored = await Promise.all([a, b].map((replica) => read(replica, name)));
      assert.deepEqual(stored[0], stored[1], `${name}: both replicas read the same entry`);
      assert.equal(stored[0].length, 1);
      assert.ok(triedSince.get(name)!.has(stored[0][0]), `${name} holds ${stored[0][0]}: its last acknowledged write or a later one`);
      await untilAnswers(a.resolver, name, stored[0], 3000);
      await untilAnswers(b.resolver, name, stored[0], 3000);
    }
  });
});

describe('replicas on a 3-node Redis Cluster', () => {
  test('propagation within 100 ms, atomic diversion and import, through divert serve', async (t) => {
    const cluster = await startRedisCluster();
    t.after(() => cluster.stop());
    const prefix = uniquePrefix('cluster');
    const a = await startReplica(cluster, prefix);
    t.after(() => a.process.stop());
    const b = await startReplica(cluster, prefix);
    t.after(() => b.process.stop());

    assert.equal((await a.put('www.shop.test', ['192.0.2.1'])).status, 200);
    await untilAnswers(b.resolver, 'www.shop.test', ['192.0.2.1'], 1000);
    assert.equal((await a.put('www.shop.test', ['192.0.2.2'])).status, 200);
    await untilAnswers(b.resolver, 'www.shop.test', ['192.0.2.2'], 100);

    const X = '203.0.113.10',
      Y = '203.0.113.20',
      Z = '203.0.113.30';
    for (const [name, addresses] of [
      ['d1.shop.test', [X]],
      ['d2.shop.test', [X, Y]],
      ['d3.shop.test', [X]],
      ['d4.shop.test', [Y]],
    ] as const) {
      assert.equal((await a.put(name, [...addresses])).status, 200);
    }
    const diverted = await b.post('/v1/diversions', JSON.stringify({ from: X, to: Z }));
    assert.equal(diverted.status, 200);
    const changed = ((await diverted.json()) as { changed: { name: string }[] }).changed.map((e) => e.name).sort();
    assert.deepEqual(changed, ['d1.shop.test', 'd2.shop.test', 'd3.shop.test']);
    await untilAnswers(a.resolver, 'd1.shop.test', [Z], 1000);
    await untilAnswers(a.resolver, 'd2.shop.test', [Y, Z], 1000);
    await untilAnswers(a.resolver, 'd4.shop.test', [Y], 1000);

    const bad = await a.post('/v1/import?file=c.zone', '$ORIGIN shop.test.\nd1 IN A 198.51.100.1\nnew IN A 1.2.3\n', 'text/dns');
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /^c\.zone:3:/);
    await untilAnswers(b.resolver, 'd1.shop.test', [Z], 100);
    const good = await a.post('/v1/import?file=c.zone', '$ORIGIN shop.test.\nd1 IN A 198.51.100.1\nnew IN A 198.51.100.2\n', 'text/dns');
    assert.equal(good.status, 200);
    await untilAnswers(b.resolver, 'd1.shop.test', ['198.51.100.1'], 1000);
    await untilAnswers(b.resolver, 'new.shop.test', ['198.51.100.2'], 1000);
    await cluster.dropPrefix(prefix);
  });
});
