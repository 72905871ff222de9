// Networks and client addresses as numbers: an address as 32-bit words, a rule's networks
// as (network, prefix) lists, and the client addresses and ECS subnets of queries worked
// out once and remembered, so a query compares numbers instead of parsing text.

import ipaddr from 'ipaddr.js';
import { parseCidr } from '../net/cidr.js';
import type { Ecs } from '../wire/edns.js';

/** How many IPv6 clients (and, per entry, ECS subnets) are remembered once worked out. */
export const MAX_REMEMBERED_CLIENTS = 10_000;

/** `map`'s value for `key`, made once; the map is emptied when it reaches the bound. */
export function remember<V>(map: Map<string, V>, key: string, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    if (map.size >= MAX_REMEMBERED_CLIENTS) map.clear();
    value = make();
    map.set(key, value);
  }
  return value;
}

/** An address as 32-bit words: one for IPv4, four for IPv6. */
export type Words = Uint32Array;

function wordsOf(address: ipaddr.IPv4 | ipaddr.IPv6): Words {
  if (address.kind() === 'ipv4') {
    const o = (address as ipaddr.IPv4).octets;
    return Uint32Array.of(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0);
  }
  const p = (address as ipaddr.IPv6).parts;
  return Uint32Array.of(((p[0] << 16) | p[1]) >>> 0, ((p[2] << 16) | p[3]) >>> 0, ((p[4] << 16) | p[5]) >>> 0, ((p[6] << 16) | p[7]) >>> 0);
}

export function maskWord(prefix: number, word: number): number {
  const bits = Math.max(0, Math.min(32, prefix - word * 32));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Whether a and b agree on their first `prefix` bits. */
export function samePrefix(a: Words, aAt: number, b: Words, bAt: number, words: number, prefix: number): boolean {
  for (let w = 0; w < words; w++) {
    const mask = maskWord(prefix, w);
    if ((a[aAt + w] & mask) >>> 0 !== (b[bAt + w] & mask) >>> 0) return false;
  }
  return true;
}

/** One family's networks of one rule. */
export interface NetList {
  /** Network addresses, `words` per network (host bits zero, as checked). */
  nets: Uint32Array;
  prefixes: Uint8Array;
}

export function emptyNets(): NetList {
  return { nets: new Uint32Array(0), prefixes: new Uint8Array(0) };
}

export function compileNets(networks: readonly string[]): { v4: NetList; v6: NetList } {
  const v4: { words: number[]; prefixes: number[] } = { words: [], prefixes: [] };
  const v6: { words: number[]; prefixes: number[] } = { words: [], prefixes: [] };
  for (const network of networks) {
    const [net, prefix] = parseCidr(network);
    const into = net.kind() === 'ipv4' ? v4 : v6;
    into.words.push(...wordsOf(net));
    into.prefixes.push(prefix);
  }
  const list = (l: typeof v4): NetList => ({ nets: Uint32Array.from(l.words), prefixes: Uint8Array.from(l.prefixes) });
  return { v4: list(v4), v6: list(v6) };
}

/**
 * The prefix length of the widest network in `list` that holds `address` (words per
 * network: `words`), or -1. Networks longer than `maxPrefix` do not count: an ECS subnet
 * lies within a network only when it is no longer than the subnet's source prefix.
 */
export function widestMatch(list: NetList, words: number, address: Words, maxPrefix: number): number {
  let best = -1;
  for (let k = 0; k < list.prefixes.length; k++) {
    const prefix = list.prefixes[k];
    if (prefix > maxPrefix || (best >= 0 && prefix >= best)) continue;
    if (samePrefix(address, 0, list.nets, k * words, words, prefix)) best = prefix;
  }
  return best;
}

/**
 * A dotted-quad client address (or IPv4-mapped ::ffff:a.b.c.d) as a 32-bit number, or -1
 * for anything else. Reads the characters in place: no parse, no lookup.
 */
export function ipv4Of(text: string): number {
  let i = text.length > 7 && text.charCodeAt(0) === 0x3a && /^::ffff:/i.test(text) ? 7 : 0;
  let value = 0;
  for (let part = 0; part < 4; part++) {
    let octet = 0;
    let digits = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      digits++;
    }
    if (digits === 0 || digits > 3 || octet > 255) return -1;
    value = value * 256 + octet;
    if (part < 3) {
      if (text.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
  }
  return i === text.length ? value : -1;
}

/** The client's address as words (IPv4-mapped IPv6 as IPv4), or null when unreadable. */
function clientWords(client: string): Words | null {
  try {
    // ipaddr.process turns ::ffff:a.b.c.d (dual-stack sockets) into a.b.c.d
    return wordsOf(ipaddr.process(client.split('%')[0]));
  } catch {
    return null;
  }
}

// Client addresses as words, shared by every entry: one hot map instead of a verdict map
// per entry, which with many entries costs a cache miss per query.
const parsedClients = new Map<string, Words | null>();

export function wordsOfClient(client: string): Words | null {
  return remember(parsedClients, client, () => clientWords(client));
}

export function ecsWords(ecs: Ecs): Words | null {
  try {
    return wordsOf(ecs.family === 1 ? ipaddr.IPv4.parse(ecs.address) : ipaddr.IPv6.parse(ecs.address));
  } catch {
    return null;
  }
}
