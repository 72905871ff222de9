// Per-client rate limiting: a token bucket per client network (an IPv4 /24 and an IPv6
// /56 by default, as a resolver's clients or a spoofer's range share them), so one
// client flooding the port cannot starve the others. Buckets live in an LRU: a flood
// from many networks evicts idle buckets, never grows memory.

import { LRUCache } from 'lru-cache';
import { ClientNetworks, type NetworkPrefixes } from '../net/client-networks.js';
import { lruGet } from '../lru-get.js';

export interface RateLimitOptions extends NetworkPrefixes {
  /** Queries per second per client network; a bucket holds one second's worth (at least one query). */
  qps: number;
}

interface Bucket {
  tokens: number;
  /** ms (performance.now) of the last refill. */
  at: number;
}

/** Networks tracked at once; beyond this the least recently seen bucket goes. */
const MAX_BUCKETS = 65_536;

export class RateLimiter {
  private readonly buckets = new LRUCache<string, Bucket>({ max: MAX_BUCKETS });
  /** Queries refused or dropped over the limit, for the metrics. */
  limited = 0;

  private readonly capacity: number;
  private readonly networks: ClientNetworks;

  constructor(private readonly options: RateLimitOptions) {
    this.capacity = Math.max(1, options.qps);
    this.networks = new ClientNetworks(options);
  }

  /** Whether a query from `address` is within its network's rate; takes a token if so. */
  allows(address: string, now = performance.now()): boolean {
    const key = this.networks.of(address);
    let bucket = lruGet(this.buckets, key);
    if (bucket === undefined) {
      bucket = { tokens: this.capacity, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.capacity, bucket.tokens + ((now - bucket.at) * this.options.qps) / 1000);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return true;
    }
    this.limited++;
    return false;
  }
}
