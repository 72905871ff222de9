// An entry's answer records in wire form: encoded once when the entry changes, copied
// into each reply as they are; and the shape of a per-query choice among them.

import { CLASS_IN, HEADER_BYTES, TYPE_A, TYPE_AAAA } from './header.js';
import type { Ecs } from './edns.js';
import { rdataCodecs } from './rdata.js';

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
 * Picks one query's records from an entry with rules or load sharing (src/rules/match.ts):
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
