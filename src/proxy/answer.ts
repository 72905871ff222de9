// What a name's entry answers one client, as addresses: the records `divert serve` would
// put in a DNS reply to that client (its rules, weights and pick decide, as for a query),
// read back out of their wire form; and an address target moved by the diversions in force.

import { isIPv4, isIPv6 } from 'node:net';
import { canonicalIPv6 } from '../entry/addresses.js';
import type { EntryData } from '../entry/entry.js';
import { compileEntry } from '../rules/compile.js';
import type { CompiledAnswers, Selection } from '../wire/answers.js';
import { TYPE_A, TYPE_AAAA } from '../wire/header.js';

/** An entry as the proxy keeps it: its data, and its answers compiled as the server compiles them. */
export interface KnownEntry {
  data: EntryData;
  answers: CompiledAnswers;
  /** Every address the entry can answer anyone with (its lists and every rule's). */
  all: ReadonlySet<string>;
  /** An entry without rules or load sharing answers every client alike: its two orders
   * (IPv4 first, IPv6 first), read out of the records once; null when `select` decides. */
  fixed: { v4First: readonly string[]; v6First: readonly string[] } | null;
}

const V4_FIRST = [TYPE_A, TYPE_AAAA] as const;
const V6_FIRST = [TYPE_AAAA, TYPE_A] as const;

export function knownEntry(data: EntryData): KnownEntry {
  const all = new Set<string>([...data.a, ...data.aaaa]);
  for (const rule of data.rules ?? []) for (const address of [...(rule.a ?? []), ...(rule.aaaa ?? [])]) all.add(address);
  const answers = compileEntry(data);
  let fixed: KnownEntry['fixed'] = null;
  if (!answers.select) {
    const v4 = addressesOf(answers.a, answers.aCount, TYPE_A);
    const v6 = addressesOf(answers.aaaa, answers.aaaaCount, TYPE_AAAA);
    fixed = { v4First: [...v4, ...v6], v6First: [...v6, ...v4] };
  }
  return { data, answers, all, fixed };
}

/** The addresses in records encoded by wire/answers.ts (a 12-byte head, then the address). */
function addressesOf(records: Buffer, count: number, type: number): string[] {
  const size = type === TYPE_A ? 16 : 28;
  const out: string[] = [];
  for (let i = 0; i < count && (i + 1) * size <= records.length; i++) {
    const at = i * size + 12;
    if (type === TYPE_A) out.push(`${records[at]}.${records[at + 1]}.${records[at + 2]}.${records[at + 3]}`);
    else {
      const groups: string[] = [];
      for (let g = 0; g < 8; g++) groups.push(records.readUInt16BE(at + g * 2).toString(16));
      out.push(canonicalIPv6(groups.join(':')));
    }
  }
  return out;
}

/**
 * The addresses the entry answers `client` with, in answer order: of the client's own
 * family first (an IPv4 client is answered from A, an IPv6 one from AAAA), then the other.
 */
export function answerFor(entry: KnownEntry, client: string, now = Date.now()): readonly string[] {
  const v6 = isIPv6(client) && !client.startsWith('::ffff:');
  // the same for every client: read once (knownEntry), not per connection
  if (entry.fixed) return v6 ? entry.fixed.v6First : entry.fixed.v4First;
  const { answers } = entry;
  const asked = client.startsWith('::ffff:') ? client.replace(/^::ffff:(?=\d+\.)/, '') : client;
  const out: string[] = [];
  for (const type of v6 ? V6_FIRST : V4_FIRST) {
    const selection: Selection = { records: Buffer.alloc(0), count: 0, scope: null };
    answers.select!(asked, null, now, type, selection);
    out.push(...addressesOf(selection.records, selection.count, type));
  }
  return out;
}

/** Where an address target goes now: `from` followed through the diversions in force (a loop stops where it would repeat). */
export function divertedAddress(diversions: ReadonlyMap<string, string>, address: string): string {
  // not diverted (the usual case, once per new connection): no set of addresses seen
  if (!diversions.has(address)) return address;
  const seen = new Set<string>([address]);
  let at = address;
  for (let next = diversions.get(at); next !== undefined && !seen.has(next); next = diversions.get(at)) {
    seen.add(next);
    at = next;
  }
  return at;
}

export function isAddress(text: string): boolean {
  return isIPv4(text) || isIPv6(text);
}
