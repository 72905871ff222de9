// Per-client rate limiting: a token bucket per client network (an IPv4 /24 and an IPv6
// /56 by default, as a resolver's clients or a spoofer's range share them), so one
// client flooding the port cannot starve the others. Buckets live in an LRU: a flood
// from many networks evicts idle buckets, never grows memory.

import ipaddr from 'ipaddr.js';
import { LRUCache } from 'lru-cache';
import { networkOf } from './access.js';

export interface RateLimitOptions {
  /** Queries per second per client network; a bucket holds one second's worth (at least one query). */
  qps: number;
  v4Prefix: number;
  v6Prefix: number;
}

interface Bucket {
  tokens: number;
  /** ms (performance.now) of the last refill. */
  at: number;
}

/** Networks tracked at once; beyond this the least recently seen bucket goes. */
const MAX_BUCKETS = 65_536;

export class RateLimiter {
  private readonly networks = new LRUCache<string, string>({ max: MAX_BUCKETS });
  private readonly buckets = new LRUCache<string, Bucket>({ max: MAX_BUCKETS });
  /** Queries refused or dropped over the limit, for the metrics. */
  limited = 0;

  private readonly capacity: number;

  constructor(private readonly options: RateLimitOptions) {
    this.capacity = Math.max(1, options.qps);
  }

  /** Whether a query from `address` is within its network's rate; takes a token if so. */
  allows(address: string, now = performance.now()): boolean {
    const key = this.networkOf(address);
    let bucket = this.buckets.get(key);
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

  /** The client's network as text ("192.0.2.0/24"), worked out once per address. */
  private networkOf(address: string): string {
    let key = this.networks.get(address);
    if (key === undefined) {
      key = networkKey(address, this.options);
      this.networks.set(address, key);
    }
    return key;
  }
}

function networkKey(address: string, options: RateLimitOptions): string {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // an IPv4-mapped IPv6 address (dual-stack sockets) counts as the IPv4 client it is
    parsed = ipaddr.process(address.split('%')[0]);
  } catch {
    return address;
  }
  const bits = parsed.kind() === 'ipv4' ? options.v4Prefix : options.v6Prefix;
  return `${networkOf(parsed, bits).toString()}/${bits}`;
}
