// The parts of the DNS wire format that DNS UPDATE and TSIG need beyond the query path's
// (src/wire/query.ts reads only a header and one question): every record of a message
// with its exact byte range, names that may be compressed, and names in canonical form.

import { HEADER_BYTES } from '../wire/header.js';

// The canonical text of a name's labels, the table's and the query path's own form.
export { nameText } from '../wire/name.js';

export const TYPE_SOA = 6;
export const TYPE_TSIG = 250;
export const TYPE_ANY = 255;
export const CLASS_NONE = 254;
export const CLASS_ANY = 255;

/** A name as its labels (raw bytes, case kept) and the offset just past it where it was read. */
export interface WireName {
  labels: Buffer[];
  end: number;
}

/** One resource record: where it starts and ends in the message, and its fields. */
export interface WireRecord {
  start: number;
  end: number;
  name: Buffer[];
  type: number;
  klass: number;
  ttl: number;
  rdata: Buffer;
  /** Offset of the RDATA in the message (names inside it may point back). */
  rdataStart: number;
}

export interface WireMessage {
  id: number;
  flags: number;
  opcode: number;
  /** Question (zone) section: names, types and classes; no TTL or data. */
  questions: { name: Buffer[]; type: number; klass: number }[];
  /** The end of the question section. */
  questionEnd: number;
  answers: WireRecord[];
  authority: WireRecord[];
  additional: WireRecord[];
}

/** How many pointers one name may follow: more can only be a loop. */
const MAX_POINTERS = 128;

/**
 * Reads a name at `pos`, following compression pointers (each must point backwards, so
 * there is no loop); null when it runs off the message or is longer than 255 bytes.
 */
export function readName(msg: Buffer, pos: number): WireName | null {
  const labels: Buffer[] = [];
  let end = -1;
  let length = 1;
  for (let hops = 0; ;) {
    if (pos >= msg.length) return null;
    const len = msg[pos];
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { labels, end };
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 2 > msg.length || ++hops > MAX_POINTERS) return null;
      const target = msg.readUInt16BE(pos) & 0x3fff;
      // a name can only point back at an earlier name: never into the header, never forwards
      if (target < HEADER_BYTES || target >= pos) return null;
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (len > 63 || pos + 1 + len > msg.length) return null;
    length += 1 + len;
    if (length > 255) return null;
    labels.push(msg.subarray(pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
}

/** Reads the whole message into its sections; null when any part cannot be read. */
export function readMessage(msg: Buffer): WireMessage | null {
  if (msg.length < HEADER_BYTES) return null;
  const counts = [4, 6, 8, 10].map((at) => msg.readUInt16BE(at));
  const flags = msg.readUInt16BE(2);
  const questions: WireMessage['questions'] = [];
  let pos = HEADER_BYTES;
  for (let i = 0; i < counts[0]; i++) {
    const name = readName(msg, pos);
    if (!name || name.end + 4 > msg.length) return null;
    questions.push({ name: name.labels, type: msg.readUInt16BE(name.end), klass: msg.readUInt16BE(name.end + 2) });
    pos = name.end + 4;
  }
  const questionEnd = pos;
  const sections: WireRecord[][] = [];
  for (const count of counts.slice(1)) {
    const records: WireRecord[] = [];
    for (let i = 0; i < count; i++) {
      const record = readRecord(msg, pos);
      if (!record) return null;
      records.push(record);
      pos = record.end;
    }
    sections.push(records);
  }
  // trailing bytes after the last record mean the counts are wrong
  if (pos !== msg.length) return null;
  return {
    id: msg.readUInt16BE(0),
    flags,
    opcode: (flags >> 11) & 0xf,
    questions,
    questionEnd,
    answers: sections[0],
    authority: sections[1],
    additional: sections[2],
  };
}

function readRecord(msg: Buffer, start: number): WireRecord | null {
  const name = readName(msg, start);
  if (!name || name.end + 10 > msg.length) return null;
  const at = name.end;
  const rdlength = msg.readUInt16BE(at + 8);
  const end = at + 10 + rdlength;
  if (end > msg.length) return null;
  return {
    start,
    end,
    name: name.labels,
    type: msg.readUInt16BE(at),
    klass: msg.readUInt16BE(at + 2),
    ttl: msg.readUInt32BE(at + 4),
    rdata: msg.subarray(at + 10, end),
    rdataStart: at + 10,
  };
}

function lowerAscii(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/** RFC 4034 6.2 canonical wire form: uncompressed, ASCII letters in lower case. */
export function canonicalName(labels: readonly Buffer[]): Buffer {
  const out = Buffer.alloc(labels.reduce((n, l) => n + 1 + l.length, 1));
  let at = 0;
  for (const label of labels) {
    out[at++] = label.length;
    for (const b of label) out[at++] = lowerAscii(b);
  }
  out[at] = 0;
  return out;
}

/** Wire form of a presentation name ("a.b.c", a trailing dot or not); labels as given. */
export function nameToWire(name: string): Buffer {
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l !== '');
  return canonicalName(labels.map((l) => Buffer.from(l, 'latin1')));
}
