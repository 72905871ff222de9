// An entry's rules as the query path reads them: one Int32Array and one records buffer.
//
// A query touches every object on its path once, with caches cold from the kernel's
// work on the packet in between, and on this kind of machine each object costs a cache
// and TLB miss. So what a query walks is two objects per entry: `code`, holding the rules
// (STRIDE numbers each, then their IPv4 networks as (network, mask) pairs) and the
// answers (a descriptor per family of each rule and of the default), and `blob`, every
// record the entry can answer, end to end. Objects per rule, list and window are kept
// only for the ECS path, which needs the scopes.

import { maskWord, type NetList } from './networks.js';
import type { Family } from './sharing.js';
import type { Window } from './time-window.js';

export const HEADER = 3; // n, default A descriptor, default AAAA descriptor
export const STRIDE = 9;
export const HAS_NETWORKS = 1;
export const HAS_WINDOW = 2;
// per rule, from HEADER + i * STRIDE: 0 flags, 1 first IPv4 network (index of its pair),
// 2 IPv4 networks, 3 days, 4 from, 5 to, 6 zone, 7 A descriptor, 8 AAAA descriptor.
// A descriptor: m (variants), count (records each), total weight, then per variant its
// cumulative weight and the start and end of its records in the blob.

export interface Program {
  code: Int32Array;
  blob: Buffer;
}

/** One rule, compiled: its networks as numbers, its window, and its answer per family. */
export interface CompiledRule {
  v4: NetList;
  v6: NetList;
  hasNetworks: boolean;
  window: Window | null;
  a: Family;
  aaaa: Family;
}

export function compileProgram(rules: readonly CompiledRule[], entryA: Family, entryAaaa: Family): Program {
  const words: number[] = [rules.length, 0, 0];
  const chunks: Buffer[] = [];
  let bytes = 0;
  const describe = (family: Family): number => {
    const at = words.length;
    const variants = family.fixed ? [family.fixed] : family.variants;
    words.push(variants.length, family.count, family.fixed ? 0 : family.total);
    variants.forEach((records, k) => {
      words.push(family.fixed ? 0 : family.cumulative[k], bytes, bytes + records.length);
      chunks.push(records);
      bytes += records.length;
    });
    return at;
  };
  words.length = HEADER + rules.length * STRIDE;
  words.fill(0, HEADER);
  rules.forEach((rule, i) => {
    const at = HEADER + i * STRIDE;
    words[at] = (rule.hasNetworks ? HAS_NETWORKS : 0) | (rule.window ? HAS_WINDOW : 0);
    words[at + 1] = words.length;
    words[at + 2] = rule.v4.prefixes.length;
    for (let k = 0; k < rule.v4.prefixes.length; k++) words.push(rule.v4.nets[k] | 0, maskWord(rule.v4.prefixes[k], 0) | 0);
    if (rule.window) {
      words[at + 3] = rule.window.days;
      words[at + 4] = rule.window.from;
      words[at + 5] = rule.window.to;
      words[at + 6] = rule.window.zone;
    }
  });
  rules.forEach((rule, i) => {
    words[HEADER + i * STRIDE + 7] = describe(rule.a);
    words[HEADER + i * STRIDE + 8] = describe(rule.aaaa);
  });
  words[1] = describe(entryA);
  words[2] = describe(entryAaaa);
  return { code: Int32Array.from(words), blob: Buffer.concat(chunks, bytes) };
}
