// Which store holds the table, chosen once from the configuration: the embedded store,
// or Redis (opened by open-redis.ts, here for the primary and for each worker alike).
// Everything else asks this module, never the store's class: the primary's table layer,
// what a worker reads (a replica the primary feeds, or its own Redis connection), and
// the content and changes the primary sends such a replica. The Redis modules (ioredis
// and its dependencies) are imported only when the table is in Redis: a worker fed by the
// primary never loads them.

import type { ServeConfig } from '../config/options.js';
import type { ChangeListener, Entry } from '../entry/entry.js';
import { AddressTable } from './address-table.js';
import { MemoryStore } from './memory-store.js';
import type { ReplicaTable } from './replica-table.js';
import type { WorkerView } from './table.js';
import { WritePolicy } from './write-policy.js';

/** What a worker process reads its table from: serializable, it crosses the cluster's IPC. */
export type WorkerTable = { kind: 'replica' } | { kind: 'redis'; url: string; prefix: string };

/** The embedded store's content now and every change after: what a worker's replica is fed. */
export interface Replication {
  snapshot(): Entry[];
  onChange(listener: ChangeListener): () => void;
}

export interface OpenedTable {
  table: AddressTable;
  backend: 'memory' | 'redis';
  worker: WorkerTable;
  /** With the embedded store, what the primary sends each worker; null with Redis (each worker reads it). */
  replication: Replication | null;
}

type TableConfig = Pick<ServeConfig, 'redis' | 'redisPrefix' | 'maxAddresses' | 'allowTldWildcards'>;

/**
 * The primary's table. `serving`: this process answers queries too (--workers 1), so a
 * Redis store loads its name filter at once rather than on the first lookup.
 */
export async function openTable(config: TableConfig, options: { serving: boolean; onError: (err: Error) => void }): Promise<OpenedTable> {
  const policy = new WritePolicy(config);
  if (!config.redis) {
    const store = new MemoryStore({ onError: options.onError });
    return { table: new AddressTable(store, policy), backend: 'memory', worker: { kind: 'replica' }, replication: store };
  }
  const { openRedisStore } = await import('./redis/open-redis.js');
  const store = await openRedisStore({ url: config.redis, prefix: config.redisPrefix, onError: options.onError });
  if (options.serving) void store.loadFilter();
  return {
    table: new AddressTable(store, policy),
    backend: 'redis',
    worker: { kind: 'redis', url: config.redis, prefix: config.redisPrefix },
    replication: null,
  };
}

/** A worker's view: `replica` (fed by the primary over IPC) for the embedded store, else its own Redis connection. */
export async function openWorkerView(spec: WorkerTable, replica: ReplicaTable, onError: (err: Error) => void): Promise<WorkerView> {
  if (spec.kind === 'replica') return replica;
  const { openRedisStore } = await import('./redis/open-redis.js');
  const store = await openRedisStore({ url: spec.url, prefix: spec.prefix, onError });
  // the names in Redis, held in process so that names it lacks cost no round trip; until
  // the filter is loaded, lookups read Redis
  void store.loadFilter();
  return store;
}
