// Reading a query: its header and its one question, in place, never the whole message;
// and telling whether an upstream's reply answers the query that was sent.

import { writeCanonicalOctet } from './name.js';
import { HEADER_BYTES, OPCODE_MASK, OPCODE_QUERY, QR } from './header.js';

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

/**
 * Whether `reply` answers `sent` (RFC 5452 9.1): a response with the same ID and one
 * question of the same name (ASCII case-insensitive), type and class. `id`: the ID the
 * query went out with, when `sent` does not carry it.
 */
export function isReplyTo(reply: Buffer, sent: Buffer, questionEnd: number, id = sent.readUInt16BE(0)): boolean {
  if (reply.length < questionEnd || reply.length < HEADER_BYTES) return false;
  if (reply.readUInt16BE(0) !== id) return false;
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
