// Address tables for tests: the table layer over the embedded store, or over a Redis
// store opened as divert serve opens it (the store is at hand for what only a test asks
// of it: the name filter's state, a barrier on the change feed).

import { AddressTable } from '../../src/table/address-table.js';
import { MemoryStore, type MemoryStoreOptions } from '../../src/table/memory-store.js';
import { openRedisStore, type OpenRedisOptions } from '../../src/table/redis/open-redis.js';
import type { RedisStore } from '../../src/table/redis/redis-store.js';
import { WritePolicy } from '../../src/table/write-policy.js';

export function memoryTable(options: MemoryStoreOptions = {}, policy: WritePolicy = WritePolicy.DEFAULT): AddressTable {
  return new AddressTable(new MemoryStore(options), policy);
}

export type RedisTable = AddressTable & { readonly redis: RedisStore };

export async function redisTable(options: OpenRedisOptions, policy: WritePolicy = WritePolicy.DEFAULT): Promise<RedisTable> {
  const store = await openRedisStore(options);
  return Object.assign(new AddressTable(store, policy), { redis: store });
}
