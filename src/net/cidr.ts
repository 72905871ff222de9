// Networks in CIDR form, and lists of them: who may query (--allow), whose EDNS Client
// Subnet is believed (--trust-ecs), the networks of rules. A list's verdicts are
// remembered per address, so the address text is parsed once, not per query.

import ipaddr from 'ipaddr.js';
import { LRUCache } from 'lru-cache';
import { DivertError } from '../errors.js';
import { lruGet } from '../lru-get.js';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** An IPv4-mapped IPv6 network (::ffff:a.b.c.d/96+) matches clients as IPv4. */
function unmapped([net, bits]: Range): Range {
  if (net.kind() === 'ipv6' && (net as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(net as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return [net, bits];
}

/** The network of `bits` bits that holds `address`: the address with its host bits cleared. */
export function networkOf(address: ipaddr.IPv4 | ipaddr.IPv6, bits: number): ipaddr.IPv4 | ipaddr.IPv6 {
  const bytes = address.toByteArray().map((b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, bits - i * 8)))) & 0xff));
  return ipaddr.fromByteArray(bytes);
}

export function parseCidr(text: string): Range {
  const address = text.split('/')[0];
  // ipaddr.js reads "10/8" as 0.0.0.10/8; only dotted quads are meant as IPv4
  if (!address.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(address)) {
    throw new DivertError('BAD_CONFIG', `"${text}" is not a network in CIDR form (e.g. 192.168.0.0/16 or fd00::/8)`);
  }
  try {
    return unmapped(ipaddr.parseCIDR(text));
  } catch {
    // a bare address is a network of one
    if (ipaddr.isValid(text)) {
      const single = ipaddr.parse(text);
      return unmapped([single, single.kind() === 'ipv4' ? 32 : 128]);
    }
    throw new DivertError('BAD_CONFIG', `"${text}" is not a network in CIDR form (e.g. 192.168.0.0/16 or fd00::/8)`);
  }
}

export class AccessList {
  private readonly ranges: Range[];
  private readonly verdicts = new LRUCache<string, boolean>({ max: 65_536 });

  constructor(cidrs: readonly string[]) {
    this.ranges = cidrs.map(parseCidr);
  }

  allows(address: string): boolean {
    let verdict = lruGet(this.verdicts, address);
    if (verdict === undefined) {
      verdict = this.check(address);
      this.verdicts.set(address, verdict);
    }
    return verdict;
  }

  private check(address: string): boolean {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      // ipaddr.process turns an IPv4-mapped IPv6 address (dual-stack sockets) into IPv4
      parsed = ipaddr.process(address.split('%')[0]);
    } catch {
      return false;
    }
    return this.ranges.some(([net, bits]) => net.kind() === parsed.kind() && parsed.match(net, bits));
  }
}
