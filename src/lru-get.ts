// lru-cache's get(key) makes an options object per call (its default parameter) and writes
// a `status` into it: on the query path that is an allocation per query for each cache it
// asks (the access list's verdicts, the answer cache, the rate limiter's buckets). One
// shared options object instead, its `status` put back to undefined after each call, so
// what lru-cache sees is what its default gives it (a status of its own only while a
// diagnostics channel subscribes).

import type { LRUCache } from 'lru-cache';

const SHARED: { status?: unknown } = {};

/** cache.get(key), without an options object per call. */
export function lruGet<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(cache: LRUCache<K, V>, key: K): V | undefined {
  const value = cache.get(key, SHARED as LRUCache.GetOptions<K, V, unknown>);
  SHARED.status = undefined;
  return value;
}
