// Which client network an address belongs to, as the per-client limits count clients:
// an IPv4 /24 and an IPv6 /56 by default (--rate-limit-v4-prefix, --rate-limit-v6-prefix),
// since a resolver's clients, or a spoofer's range, share them, and one IPv6 host holds
// whole networks of addresses. Worked out once per address (an LRU, so a flood of new
// addresses evicts old ones and never grows memory).

import ipaddr from 'ipaddr.js';
import { LRUCache } from 'lru-cache';
import { networkOf } from './cidr.js';
import { lruGet } from '../lru-get.js';

export interface NetworkPrefixes {
  v4Prefix: number;
  v6Prefix: number;
}

/** Addresses remembered at once. */
const MAX_ADDRESSES = 65_536;

export class ClientNetworks {
  private readonly keys = new LRUCache<string, string>({ max: MAX_ADDRESSES });

  constructor(private readonly prefixes: NetworkPrefixes) {}

  /** The client's network as text ("192.0.2.0/24"). */
  of(address: string): string {
    let key = lruGet(this.keys, address);
    if (key === undefined) {
      key = networkKey(address, this.prefixes);
      this.keys.set(address, key);
    }
    return key;
  }
}

function networkKey(address: string, prefixes: NetworkPrefixes): string {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // an IPv4-mapped IPv6 address (dual-stack sockets) counts as the IPv4 client it is
    parsed = ipaddr.process(address.split('%')[0]);
  } catch {
    return address;
  }
  const bits = parsed.kind() === 'ipv4' ? prefixes.v4Prefix : prefixes.v6Prefix;
  return `${networkOf(parsed, bits).toString()}/${bits}`;
}
