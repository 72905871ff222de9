// divert serve on a real Redis: a seed never overwrites a name Redis already holds, and
// divert restarted on the same Redis serves the same table.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { redisTable } from './helpers/tables.js';
import { dropPrefix, startRedis, testRedis, uniquePrefix } from './helpers/redis.js';
import { runDivert } from './helpers/process.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';

function resolverFor(port: number): Resolver {
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  return resolver;
}

/** `divert serve` on a loopback port the OS picks, its table in Redis under `prefix`, seeded from zones/. */
function redisServe(upstreamPort: number, redisUrl: string, prefix: string): string[] {
  return [
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    `127.0.0.1:${upstreamPort}`,
    '--redis',
    redisUrl,
    '--redis-prefix',
    prefix,
    '--zones',
    'zones/',
  ];
}

describe('divert serve with --redis', () => {
  let redis: { url: string; stop(): Promise<void> };
  let upstream: TestUpstream;
  const prefix = uniquePrefix('serve');

  before(async () => {
    redis = await testRedis();
    upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.70' }] }),
    );
  });
  after(async () => {
    await dropPrefix(redis.url, prefix);
    await redis.stop();
    await upstream.close();
  });

  const serveArgs = () => redisServe(upstream.port, redis.url, prefix);

  test('a seed does not overwrite a name already in Redis; a restart serves the same table', async (t) => {
    // a monitor moved www.shop.example before divert ever started
    const table = await redisTable({ url: redis.url, prefix });
    t.after(() => table.close());
    await table.put('www.shop.example', { a: ['198.51.100.99'], aaaa: [], ttl: 30 });

    for (const [round, api] of [
      ['first start', '192.0.2.20'],
      ['restart', '198.51.100.20'],
    ]) {
      const divert = runDivert(serveArgs());
      try {
        const resolver = resolverFor(await divert.listening());
        assert.deepEqual(await resolver.resolve4('www.shop.example'), ['198.51.100.99'], `${round}: the monitor's change stands`);
        await assert.rejects(resolver.resolve6('www.shop.example'), { code: 'ENODATA' }, `${round}: not the seed's AAAA either`);
        assert.deepEqual((await resolver.resolve4('x.cdn.shop.example')).sort(), ['192.0.2.30', '192.0.2.31'], `${round}: seeded wildcard`);
        assert.deepEqual(await resolver.resolve4('api.shop.example'), [api], `${round}: seeded, then changed while divert was down`);
        assert.deepEqual(await resolver.resolve4('not-in-table.test'), ['203.0.113.70'], `${round}: forwarded`);
      } finally {
        await divert.stop();
      }
      if (round === 'first start') {
        // a change made while divert is down is what the restarted divert must serve
        await table.put('api.shop.example', { a: ['198.51.100.20'], aaaa: [], ttl: 30 });
      }
    }
  });

  test('a change written through the table after the restart is served from Redis', async (t) => {
    const table = await redisTable({ url: redis.url, prefix });
    t.after(() => table.close());
    const divert = runDivert(serveArgs());
    try {
      const resolver = resolverFor(await divert.listening());
      assert.deepEqual(await resolver.resolve4('api.shop.example'), ['198.51.100.20']);
      assert.deepEqual(await resolver.resolve4('new.shop.example'), ['203.0.113.70'], 'not intercepted yet');
      await table.put('brand-new.shop.example', { a: ['198.51.100.50'], aaaa: [], ttl: 30 });
      // A name this divert has never looked up is answered as soon as the change message
      // reached it: its name filter learns new names from those messages, and a query sent
      // right after the write may arrive first (then it is forwarded, not cached).
      const deadline = Date.now() + 1000;
      let answer = await resolver.resolve4('brand-new.shop.example');
      while (answer[0] !== '198.51.100.50' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        answer = await resolver.resolve4('brand-new.shop.example');
      }
      assert.deepEqual(answer, ['198.51.100.50']);
    } finally {
      await divert.stop();
    }
  });
});

describe('divert serve while Redis is down', () => {
  test('cached names keep their answers, others are forwarded, and service resumes when Redis returns', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.71' }] }),
    );
    t.after(() => upstream.close());
    const prefix = uniquePrefix('outage');
    // one worker: each worker has a cache of its own, and this is about what one has seen
    const divert = runDivert([...redisServe(upstream.port, redis.url, prefix), '--workers', '1']);
    t.after(() => divert.stop());
    const resolver = resolverFor(await divert.listening());
    assert.deepEqual(await resolver.resolve4('api.shop.example'), ['192.0.2.20']);
    assert.deepEqual(await resolver.resolve4('seen.test'), ['203.0.113.71']);

    await redis.kill();
    assert.deepEqual(await resolver.resolve4('api.shop.example'), ['192.0.2.20'], 'intercepted name answered from cache');
    assert.deepEqual(await resolver.resolve4('seen.test'), ['203.0.113.71'], 'known not intercepted: forwarded');
    assert.deepEqual(await resolver.resolve4('never-seen.test'), ['203.0.113.71'], 'not seen before: forwarded');

    await redis.restart(); // no persistence: the table is empty again; write a new name
    const table = await redisTable({ url: redis.url, prefix });
    t.after(() => table.close());
    await table.put('back.shop.example', { a: ['198.51.100.77'], aaaa: [], ttl: 30 });
    const deadline = Date.now() + 5000;
    let answer: string[] = [];
    while (Date.now() < deadline) {
      answer = await resolver.resolve4('back.shop.example');
      if (answer[0] === '198.51.100.77') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(answer, ['198.51.100.77'], 'reads Redis again without a restart');
    assert.equal(divert.child.exitCode, null, 'still running');
  });
});
