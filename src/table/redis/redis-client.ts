// The ioredis clients of one RedisTable: the command client (with the write scripts) and
// the pub/sub subscriber, for one server, Sentinel or Cluster alike.

import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { DELETE_DIVERSION_LUA, DELETE_LUA, DIVERT_LUA, IMPORT_LUA, INDEX_LUA, PUT_LUA, SEED_LUA } from './redis-scripts.js';
import type { RedisTarget } from './redis-url.js';

export type ScriptReply = [string, number];

/** Every script takes KEYS entries, seq and ARGV base, channel, at, by, then its own arguments (a list, which ioredis flattens). */
type Script<R> = (entries: string, seq: string, base: string, channel: string, at: string, by: string, args: string[]) => Promise<R>;

export interface ScriptCommands {
  divertPut: Script<ScriptReply>;
  divertDelete: Script<ScriptReply>;
  divertSeed: Script<(string | number)[]>;
  divertImport: Script<(string | number)[]>;
  divertDivert: Script<[string[], string[]]>;
  divertDeleteDiversion: Script<[string, string] | null>;
  divertIndex: Script<number>;
}

export type TableClient = (Redis | Cluster) & ScriptCommands;

export interface ClientTimeouts {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

const SCRIPTS = {
  divertPut: { lua: PUT_LUA, numberOfKeys: 2 },
  divertDelete: { lua: DELETE_LUA, numberOfKeys: 2 },
  divertSeed: { lua: SEED_LUA, numberOfKeys: 2 },
  divertImport: { lua: IMPORT_LUA, numberOfKeys: 2 },
  divertDivert: { lua: DIVERT_LUA, numberOfKeys: 2 },
  divertDeleteDiversion: { lua: DELETE_DIVERSION_LUA, numberOfKeys: 2 },
  divertIndex: { lua: INDEX_LUA, numberOfKeys: 2 },
};

// Reconnect on its own, capped at 2 s.
const retryStrategy = (attempt: number) => Math.min(attempt * 100, 2000);

function connectionOptions(target: Exclude<RedisTarget, { kind: 'cluster' }>): RedisOptions {
  if (target.kind === 'standalone') return {};
  return {
    sentinels: target.sentinels,
    name: target.name,
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
  };
}

function redis(target: Exclude<RedisTarget, { kind: 'cluster' }>, options: RedisOptions): Redis {
  const all = { ...connectionOptions(target), ...options };
  return target.kind === 'standalone' ? new Redis(target.url, all) : new Redis(all);
}

/**
 * `offlineQueue`: commands sent before the connection is up wait for it (the bulk client,
 * connected on first use); otherwise they fail at once while Redis is away, and the query
 * path forwards or answers from cache rather than waiting.
 */
export function createClient(target: RedisTarget, t: ClientTimeouts, { offlineQueue = false } = {}): TableClient {
  const perNode = {
    connectTimeout: t.connectTimeoutMs,
    commandTimeout: t.commandTimeoutMs,
    maxRetriesPerRequest: 1,
    // A write whose caller already saw a timeout must not be replayed after reconnect.
    autoResendUnfulfilledCommands: false,
  };
  if (target.kind === 'cluster') {
    return new Cluster(target.nodes, {
      lazyConnect: true,
      enableOfflineQueue: offlineQueue,
      clusterRetryStrategy: retryStrategy,
      scripts: SCRIPTS,
      redisOptions: {
        ...perNode,
        ...(target.username ? { username: target.username } : {}),
        ...(target.password ? { password: target.password } : {}),
      },
    }) as TableClient;
  }
  return redis(target, { ...perNode, lazyConnect: true, enableOfflineQueue: offlineQueue, retryStrategy, scripts: SCRIPTS }) as TableClient;
}

/**
 * A second connection for pub/sub (a connection in subscribe mode can send nothing else).
 * For a Cluster, a Cluster client: it keeps one subscribe connection to some node and
 * moves it to another when that node goes; PUBLISH reaches every node of a cluster.
 */
export function createSubscriber(target: RedisTarget, main: TableClient, t: ClientTimeouts): Redis | Cluster {
  if (target.kind === 'cluster') {
    return (main as Cluster).duplicate([], { lazyConnect: true, enableOfflineQueue: true, scripts: undefined });
  }
  return redis(target, {
    lazyConnect: true,
    connectTimeout: t.connectTimeoutMs,
    // Subscribing again is done by the feed after each connect, so it knows when the
    // subscription is back (and can tell listeners to resync from then on).
    autoResubscribe: false,
    maxRetriesPerRequest: null,
    retryStrategy,
  });
}
