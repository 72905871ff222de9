// The DNS wire format, and the only module that knows its bytes. The query path reads
// a message's header and question in place; it never decodes a whole message, and it
// never re-encodes one that is only passed on. dns-packet encodes record data once per
// table change; nothing per query goes through it.

import dnsPacket from 'dns-packet';
import { writeCanonicalOctet } from './name.js';

export const HEADER_BYTES = 12;

export const enum Rcode {
  NoError = 0,
  FormErr = 1,
  ServFail = 2,
  NXDomain = 3,
  NotImp = 4,
  Refused = 5,
}

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

/** Record types as logs, metrics and messages name them; any other is TYPEnnn (RFC 3597). */
const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  39: 'DNAME', 43: 'DS', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF', 255: 'ANY', 257: 'CAA',
};

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** Response codes of the header's four bits (RFC 1035, RFC 2136), by name. */
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

/** The UDP payload size divert advertises in its own OPT records (DNS flag day 2020). */
export const EDNS_UDP_PAYLOAD = 1232;

const QR = 0x8000;
const OPCODE_MASK = 0x7800;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;

/** What the query path knows of a message after reading its header and question. */
export interface Query {
  id: number;
  flags: number;
  opcode: number;
  /** Canonical text of the name (wire/name.ts), without the trailing dot ("" for the root). */
  name: string;
  qtype: number;
  qclass: number;
  /** Offset just past the question: bytes 12..questionEnd are echoed in replies. */
  questionEnd: number;
}

/** Why a message could not be read as a query: `drop` when not even the header can be. */
export type Unreadable = 'drop' | 'formerr';

export function isUnreadable(q: Query | Unreadable): q is Unreadable {
  return typeof q === 'string';
}

// Scratch space for building a name; a name is at most 255 bytes, escaped at most 4×.
const nameScratch = Buffer.allocUnsafe(1024);

export const OPCODE_QUERY = 0;

/**
 * Opcodes divert never passes upstream: IQUERY (retired, RFC 3425: NOTIMP), NOTIFY and
 * UPDATE (clients may not write upstream zones through divert; its own table takes DNS
 * UPDATE on --update-listen) and DSO (RFC 8490: a session with this server, which it does
 * not offer; a server without DSO answers NOTIMP). QUERY, STATUS and unassigned opcodes
 * are forwarded unchanged.
 */
export function isPassedOn(opcode: number): boolean {
  return opcode !== 1 && opcode !== 4 && opcode !== 5 && opcode !== 6;
}

/** A message of another opcode whose question is not one readable question: it is handled by its header alone. */
function headerOnly(msg: Buffer, flags: number, opcode: number): Query {
  return { id: msg.readUInt16BE(0), flags, opcode, name: '', qtype: -1, qclass: -1, questionEnd: HEADER_BYTES };
}

/**
 * Reads header and the single question. The question name may not use compression: in
 * a query the only earlier bytes are the header, so any pointer there is malformed
 * (this also rules out pointer loops). A QUERY without exactly one readable question is
 * FORMERR; a message of another opcode, whose form divert does not judge, is then read
 * as its header alone (questionEnd = HEADER_BYTES), to be forwarded or refused whole.
 */
export function readQuery(msg: Buffer): Query | Unreadable {
  if (msg.length < HEADER_BYTES) return 'drop';
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return 'drop'; // a response sent to us: answering it could start a loop
  const opcode = (flags & OPCODE_MASK) >> 11;
  const unreadable = () => (opcode === OPCODE_QUERY ? 'formerr' : headerOnly(msg, flags, opcode));
  if (msg.readUInt16BE(4) !== 1) return unreadable();

  let pos = HEADER_BYTES;
  let out = 0;
  for (;;) {
    if (pos >= msg.length) return unreadable();
    const len = msg[pos];
    if (len === 0) {
      pos += 1;
      break;
    }
    if (len > 63) return unreadable(); // compression pointer or reserved label type
    // RFC 1035 3.1: 255 bytes at most, counting the length bytes and the final zero
    if (pos + 1 + len > msg.length || pos + 1 + len - HEADER_BYTES + 1 > 255) return unreadable();
    if (out > 0) nameScratch[out++] = 0x2e;
    for (let i = pos + 1; i <= pos + len; i++) out = writeCanonicalOctet(nameScratch, out, msg[i]);
    pos += 1 + len;
  }
  if (pos + 4 > msg.length) return unreadable();
  return {
    id: msg.readUInt16BE(0),
    flags,
    opcode,
    name: nameScratch.toString('latin1', 0, out),
    qtype: msg.readUInt16BE(pos),
    qclass: msg.readUInt16BE(pos + 2),
    questionEnd: pos + 4,
  };
}

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
export function readEdns(msg: Buffer, q: Query): Edns | null | 'formerr' {
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
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** Encoded A and AAAA records, ready to be copied into a reply. */
export interface AnswerRecords {
  a: Buffer;
  aCount: number;
  aaaa: Buffer;
  aaaaCount: number;
}

/** What one query gets from an entry with rules: records to copy, their count, the ECS scope. */
export interface Selection {
  records: Buffer;
  count: number;
  scope: number | null;
}

/**
 * Picks one query's records from an entry with rules or load sharing (src/rules/compile.ts):
 * the client's address, its trusted ECS, the time (ms) and `qtype` (A or AAAA) decide;
 * the choice is written into `out`, so nothing is allocated.
 */
export type Selector = (client: string, ecs: Ecs | null, now: number, qtype: number, out: Selection) => Selection;

/**
 * An entry's answer records, encoded once when the entry changes: its default answer and,
 * only when it has rules or load sharing, `select` for the per-query answer.
 */
export interface CompiledAnswers extends AnswerRecords {
  ttl: number;
  /** The table entry these answers come from (a wildcard's own name), for per-name figures. */
  owner?: string;
  /** Present when the entry has rules or load sharing. */
  select?: Selector;
}

// dns-packet's per-type rdata codecs exist at run time but are missing from its typings.
interface RdataCodec {
  encode(value: string, buf: Buffer, offset: number): Buffer;
}
const rdataCodecs = dnsPacket as unknown as { a: RdataCodec; aaaa: RdataCodec };

export function encodeRecords(type: number, ttl: number, addresses: readonly string[]): Buffer {
  const rdata = type === TYPE_A ? rdataCodecs.a : rdataCodecs.aaaa;
  const size = type === TYPE_A ? 16 : 28;
  const out = Buffer.alloc(addresses.length * size);
  addresses.forEach((address, i) => {
    const at = i * size;
    out.writeUInt16BE(0xc000 | HEADER_BYTES, at); // the owner is the question's name
    out.writeUInt16BE(type, at + 2);
    out.writeUInt16BE(CLASS_IN, at + 4);
    out.writeUInt32BE(ttl, at + 6);
    rdata.encode(address, out, at + 10); // rdlength and address
  });
  return out;
}

export function compileAnswers(entry: { a: string[]; aaaa: string[]; ttl: number }): CompiledAnswers {
  return {
    ttl: entry.ttl,
    a: encodeRecords(TYPE_A, entry.ttl, entry.a),
    aCount: entry.a.length,
    aaaa: encodeRecords(TYPE_AAAA, entry.ttl, entry.aaaa),
    aaaaCount: entry.aaaa.length,
  };
}

const OPT_BYTES = 11;

function replyFlags(q: { flags: number }, rcode: number, authoritative: boolean): number {
  return QR | (q.flags & (OPCODE_MASK | RD | CD)) | RA | (authoritative ? AA : 0) | (rcode & 0xf);
}

/** An ECS option to echo in a reply: the query's subnet with the answer's scope. */
interface EcsEcho {
  ecs: Ecs;
  scope: number;
}

/** Option code and length, FAMILY, SOURCE and SCOPE PREFIX-LENGTH, then the address bytes. */
function ecsOptionBytes(ecs: Ecs): number {
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

function writeOpt(out: Buffer, at: number, rcode: number, dnssecOk: boolean, echo: EcsEcho | null): void {
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

/**
 * A reply that echoes the query's header ID and question byte for byte and carries
 * `records` (already encoded, `count` of them) as its answer section.
 */
function buildReply(
  msg: Buffer,
  q: Query,
  rcode: number,
  authoritative: boolean,
  records: Buffer | null,
  count: number,
  edns: Edns | null,
  maxBytes: number,
  echo: EcsEcho | null = null,
): Buffer {
  const questionBytes = q.questionEnd - HEADER_BYTES;
  const optBytes = edns ? OPT_BYTES + (echo ? ecsOptionBytes(echo.ecs) : 0) : 0;
  let flags = replyFlags(q, rcode, authoritative);
  let answerBytes = records ? records.length : 0;
  if (HEADER_BYTES + questionBytes + answerBytes + optBytes > maxBytes) {
    flags |= TC; // RFC 2181 9: a truncated reply carries no partial RRset
    answerBytes = 0;
    count = 0;
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + questionBytes + answerBytes + optBytes);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(questionBytes > 0 ? 1 : 0, 4);
  out.writeUInt16BE(count, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  msg.copy(out, HEADER_BYTES, HEADER_BYTES, q.questionEnd);
  if (answerBytes > 0) records!.copy(out, q.questionEnd);
  if (edns) writeOpt(out, q.questionEnd + answerBytes, rcode, edns.dnssecOk, echo);
  return out;
}

/**
 * The answer for an intercepted name: its A or AAAA records, or NODATA for any other type.
 * With `ecsScope` (not null) and an ECS option in the query, the reply's OPT echoes that
 * option with SCOPE PREFIX-LENGTH = ecsScope (RFC 7871 7.2.1); otherwise no ECS option is
 * sent, as from a server that does not support ECS.
 */
export function answerReply(
  msg: Buffer,
  q: Query,
  answers: AnswerRecords,
  edns: Edns | null,
  maxBytes: number,
  ecsScope: number | null = null,
): Buffer {
  if (q.qtype === TYPE_A) return recordsReply(msg, q, answers.a, answers.aCount, edns, maxBytes, ecsScope);
  if (q.qtype === TYPE_AAAA) return recordsReply(msg, q, answers.aaaa, answers.aaaaCount, edns, maxBytes, ecsScope);
  return recordsReply(msg, q, null, 0, edns, maxBytes, ecsScope);
}

/** The answer for an intercepted name with these records (null: NODATA); ECS as in answerReply. */
export function recordsReply(
  msg: Buffer,
  q: Query,
  records: Buffer | null,
  count: number,
  edns: Edns | null,
  maxBytes: number,
  ecsScope: number | null = null,
): Buffer {
  const echo = ecsScope !== null && edns?.ecs ? { ecs: edns.ecs, scope: ecsScope } : null;
  return buildReply(msg, q, Rcode.NoError, true, records, count, edns, maxBytes, echo);
}

/** An error reply with the question echoed (REFUSED, SERVFAIL, NOTIMP, FORMERR, BADVERS). */
export function errorReply(msg: Buffer, q: Query, rcode: number, edns: Edns | null = null): Buffer {
  return buildReply(msg, q, rcode, false, null, 0, edns, 0xffff);
}

/** An error reply to a message whose header could be read but not its question: header only. */
export function headerOnlyReply(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(msg.readUInt16BE(0), 0);
  out.writeUInt16BE(replyFlags({ flags: msg.readUInt16BE(2) }, rcode, false), 2);
  return out;
}

/** FORMERR for a message whose header could be read but not its question: header only. */
export function headerOnlyFormErr(msg: Buffer): Buffer {
  return headerOnlyReply(msg, Rcode.FormErr);
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

export function messageId(msg: Buffer): number {
  return msg.readUInt16BE(0);
}

export function setMessageId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id, 0);
}

/**
 * Whether `reply` answers `sent` (RFC 5452 9.1): a response with the same ID and one
 * question of the same name (ASCII case-insensitive), type and class.
 */
export function isReplyTo(reply: Buffer, sent: Buffer, questionEnd: number): boolean {
  if (reply.length < questionEnd || reply.length < HEADER_BYTES) return false;
  if (reply.readUInt16BE(0) !== sent.readUInt16BE(0)) return false;
  if ((reply.readUInt16BE(2) & QR) === 0) return false;
  // a message forwarded by its header alone (another opcode, no readable question): the
  // answer must be of the same opcode, with no question or as many as were sent
  if (questionEnd === HEADER_BYTES) {
    const questions = reply.readUInt16BE(4);
    return (questions === 0 || questions === sent.readUInt16BE(4)) && ((reply.readUInt16BE(2) ^ sent.readUInt16BE(2)) & OPCODE_MASK) === 0;
  }
  if (reply.readUInt16BE(4) !== 1) return false;
  const nameEnd = questionEnd - 4;
  for (let i = HEADER_BYTES; i < nameEnd; i++) {
    const a = reply[i];
    const b = sent[i];
    // label lengths never fall in the letter ranges, so folding only letters is exact
    if (a !== b && !((a | 0x20) === (b | 0x20) && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7a)) return false;
  }
  if (reply.readUInt32BE(nameEnd) !== sent.readUInt32BE(nameEnd)) return false;
  return true;
}
