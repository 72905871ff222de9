// EDNS (RFC 6891) and EDNS Client Subnet (RFC 7871): reading the OPT record a query
// carries, the UDP size a reply may take, and writing the OPT record of divert's own replies.

import { TYPE_OPT } from './header.js';
import type { Query } from './query.js';
import { rdataCodecs } from './rdata.js';

/** The UDP payload size divert advertises in its own OPT records (DNS flag day 2020). */
export const EDNS_UDP_PAYLOAD = 1232;

/** EDNS Client Subnet of a query (RFC 7871): the network a resolver asks on behalf of. */
export interface Ecs {
  /** 1: IPv4, 2: IPv6 (RFC 7871 6, address family numbers). */
  family: 1 | 2;
  sourcePrefix: number;
  /** Text form, every bit beyond the prefix zero. */
  address: string;
}

/** EDNS as a query asked for it (RFC 6891). */
export interface Edns {
  udpPayload: number;
  version: number;
  dnssecOk: boolean;
  /** Present only when the query carried an ECS option. */
  ecs?: Ecs;
}

export const OPTION_ECS = 8;

/** Skips one (possibly compressed) name; -1 when it runs off the message. */
function skipName(msg: Buffer, pos: number): number {
  for (;;) {
    if (pos >= msg.length) return -1;
    const len = msg[pos];
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2 <= msg.length ? pos + 2 : -1;
    if (len > 63) return -1;
    pos += 1 + len;
  }
}

/**
 * Finds the OPT record among the records after the question. Only intercepted queries
 * need this; forwarded ones go upstream as they are. Returns null when there is none,
 * 'formerr' when the records cannot be walked or OPT is misplaced or repeated.
 */
export function readEdns(msg: Buffer, q: Pick<Query, 'questionEnd'>): Edns | null | 'formerr' {
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  const additionalFrom = msg.readUInt16BE(6) + msg.readUInt16BE(8);
  let pos = q.questionEnd;
  let edns: Edns | null = null;
  for (let i = 0; i < records; i++) {
    const nameStart = pos;
    pos = skipName(msg, pos);
    if (pos < 0 || pos + 10 > msg.length) return 'formerr';
    const type = msg.readUInt16BE(pos);
    const rdlength = msg.readUInt16BE(pos + 8);
    if (type === TYPE_OPT) {
      if (edns || i < additionalFrom || msg[nameStart] !== 0) return 'formerr';
      edns = {
        udpPayload: Math.max(512, msg.readUInt16BE(pos + 2)),
        version: msg[pos + 5],
        dnssecOk: (msg[pos + 6] & 0x80) !== 0,
      };
      // most OPTs carry no options: nothing more to read
      if (rdlength > 0 && pos + 10 + rdlength <= msg.length) {
        const ecs = readOptions(msg, pos + 10, pos + 10 + rdlength);
        if (ecs === 'formerr') return 'formerr';
        if (ecs) edns.ecs = ecs;
      }
    }
    pos += 10 + rdlength;
    if (pos > msg.length) return 'formerr';
  }
  return edns;
}

/** The ECS option among the OPT options in msg[start, end); 'formerr' when they are malformed. */
function readOptions(msg: Buffer, start: number, end: number): Ecs | null | 'formerr' {
  let ecs: Ecs | null = null;
  let pos = start;
  while (pos < end) {
    if (pos + 4 > end) return 'formerr';
    const code = msg.readUInt16BE(pos);
    const length = msg.readUInt16BE(pos + 2);
    pos += 4;
    if (pos + length > end) return 'formerr';
    if (code === OPTION_ECS) {
      // two client subnets leave the query's client unknown
      if (ecs) return 'formerr';
      const read = readEcs(msg, pos, length);
      if (read === 'formerr') return 'formerr';
      ecs = read;
    }
    pos += length;
  }
  return ecs;
}

/** RFC 7871 6 and 7.1.1: anything but a well-formed query option is FORMERR. */
function readEcs(msg: Buffer, at: number, length: number): Ecs | 'formerr' {
  if (length < 4) return 'formerr';
  const family = msg.readUInt16BE(at);
  const sourcePrefix = msg[at + 2];
  if (family !== 1 && family !== 2) return 'formerr';
  if (sourcePrefix > (family === 1 ? 32 : 128) || msg[at + 3] !== 0) return 'formerr';
  const bytes = (sourcePrefix + 7) >> 3;
  if (length !== 4 + bytes) return 'formerr';
  if (sourcePrefix % 8 !== 0 && (msg[at + 3 + bytes] & (0xff >> (sourcePrefix % 8))) !== 0) return 'formerr';
  const address = family === 1 ? ecsIPv4(msg, at + 4, bytes) : ecsIPv6(msg, at + 4, bytes);
  return { family, sourcePrefix, address };
}

function ecsIPv4(msg: Buffer, at: number, bytes: number): string {
  let text = '';
  for (let i = 0; i < 4; i++) text += (i > 0 ? '.' : '') + (i < bytes ? msg[at + i] : 0);
  return text;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as "::". */
function ecsIPv6(msg: Buffer, at: number, bytes: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((i < bytes ? msg[at + i] : 0) << 8) | (i + 1 < bytes ? msg[at + i + 1] : 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** The smallest UDP payload every DNS client takes (RFC 1035 2.3.4). */
export const MIN_UDP_PAYLOAD = 512;

/**
 * Largest reply divert sends the client over UDP: what the client can take (512, or its
 * EDNS size; RFC 6891 6.2.5: never below 512), but never more than `maxUdpSize`
 * (--max-udp-size), whatever the client offers, so a small spoofed query cannot draw a
 * large reply at its victim. Larger replies go out truncated (TC), to be asked over TCP.
 */
export function udpLimit(edns: Edns | null, maxUdpSize = EDNS_UDP_PAYLOAD): number {
  const client = edns ? edns.udpPayload : MIN_UDP_PAYLOAD;
  return Math.max(MIN_UDP_PAYLOAD, Math.min(client, maxUdpSize));
}

export const OPT_BYTES = 11;

/** An ECS option to echo in a reply: the query's subnet with the answer's scope. */
export interface EcsEcho {
  ecs: Ecs;
  scope: number;
}

/** Option code and length, FAMILY, SOURCE and SCOPE PREFIX-LENGTH, then the address bytes. */
export function ecsOptionBytes(ecs: Ecs): number {
  return 8 + ((ecs.sourcePrefix + 7) >> 3);
}

// dns-packet writes an address as rdlength + bytes; the ECS address is their prefix
const addressScratch = Buffer.alloc(18);

function writeEcs(out: Buffer, at: number, { ecs, scope }: EcsEcho): void {
  const bytes = (ecs.sourcePrefix + 7) >> 3;
  out.writeUInt16BE(OPTION_ECS, at);
  out.writeUInt16BE(4 + bytes, at + 2);
  out.writeUInt16BE(ecs.family, at + 4);
  out[at + 6] = ecs.sourcePrefix;
  out[at + 7] = scope;
  (ecs.family === 1 ? rdataCodecs.a : rdataCodecs.aaaa).encode(ecs.address, addressScratch, 0);
  addressScratch.copy(out, at + 8, 2, 2 + bytes);
}

export function writeOpt(out: Buffer, at: number, rcode: number, dnssecOk: boolean, echo: EcsEcho | null): void {
  out[at] = 0; // root owner
  out.writeUInt16BE(TYPE_OPT, at + 1);
  out.writeUInt16BE(EDNS_UDP_PAYLOAD, at + 3);
  out[at + 5] = rcode >> 4; // extended rcode
  out[at + 6] = 0; // version
  out[at + 7] = dnssecOk ? 0x80 : 0; // RFC 3225: DO is copied from the query
  out[at + 8] = 0;
  out.writeUInt16BE(echo ? ecsOptionBytes(echo.ecs) : 0, at + 9);
  if (echo) writeEcs(out, at + OPT_BYTES, echo);
}
