// RedisTable on a three-node Redis Cluster: pub/sub from scripts reaching every node,
// changes between tables, resync and the reverse index (the contract runs in address-table.test.ts).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { redisTable } from './helpers/tables.js';
import { startRedisCluster, uniquePrefix, type RedisCluster } from './helpers/redis.js';
import { eventually, sharedStoreSuite } from './redis-scenarios.js';

let cluster: RedisCluster;
before(async () => {
  cluster = await startRedisCluster();
});
after(async () => {
  await cluster?.stop();
});

describe('RedisTable on a cluster', () => {
  it('publishes from its scripts so that subscribers on every node hear it', async (t) => {
    const prefix = uniquePrefix('cluster-pub');
    t.after(() => cluster.dropPrefix(prefix));
    const received = cluster.nodes.map(() => [] as string[]);
    const subscribers = cluster.nodes.map((node, i) => {
      const s = new Redis(node);
      s.on('message', (_channel: string, message: string) => received[i].push(message));
      return s;
    });
    t.after(() => subscribers.forEach((s) => s.disconnect()));
    await Promise.all(subscribers.map((s) => s.subscribe(`${prefix}changes`)));
    const table = await redisTable({ url: cluster.url, prefix });
    t.after(() => table.close());
    const [entry] = await table.importEntries(new Map([['c.test', { a: ['192.0.2.1'], aaaa: [], ttl: 30 }]]));
    await eventually('every node', 1000, () => received.every((r) => r.length === 1));
    for (const r of received) assert.deepEqual(JSON.parse(r[0]), { name: 'c.test', entry: { ...entry }, version: entry.version });
  });
});

sharedStoreSuite('a cluster', () => ({
  url: cluster.url,
  nodes: cluster.nodes.map((n) => `redis://${n.host}:${n.port}`),
  dropPrefix: (p) => cluster.dropPrefix(p),
}));
