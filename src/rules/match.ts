// Matching a query against an entry's compiled rules: the first rule whose networks hold
// the client and whose window holds now gives the answer, a weighted draw among its
// variants. The common case (the client's own address, no ECS) reads only the program.

import { TYPE_AAAA } from '../wire/header.js';
import type { Ecs } from '../wire/edns.js';
import type { CompiledAnswers, Selection, Selector } from '../wire/answers.js';
import { localTimeIn } from './local-time.js';
import { ipv4Of } from './networks.js';
import { HAS_NETWORKS, HAS_WINDOW, HEADER, STRIDE } from './program.js';
import { windowHolds } from './time-window.js';

/** Rule i's window at `now` (true for a rule without one). */
export function windowAt(code: Int32Array, i: number, now: number): boolean {
  const at = HEADER + i * STRIDE;
  if ((code[at] & HAS_WINDOW) === 0) return true;
  const local = localTimeIn(code[at + 6], now);
  return windowHolds(code[at + 3], code[at + 4], code[at + 5], local.day, local.minute);
}

/** Whether rule i's IPv4 networks hold `v4` (an address as a 32-bit number). */
function holdsV4(code: Int32Array, i: number, v4: number): boolean {
  const at = HEADER + i * STRIDE;
  for (let k = code[at + 1], end = k + 2 * code[at + 2]; k < end; k += 2) {
    if ((v4 & code[k + 1]) === code[k]) return true;
  }
  return false;
}

/** The descriptor of answer i (rule i, or the default when i = n) for `qtype`. */
export function descriptorOf(code: Int32Array, i: number, qtype: number): number {
  const aaaa = qtype === TYPE_AAAA ? 1 : 0;
  return i < code[0] ? code[HEADER + i * STRIDE + 7 + aaaa] : code[1 + aaaa];
}

/** Draws a variant of descriptor `at` (variant k with probability its weight / total). */
export function select(code: Int32Array, blob: Buffer, at: number, scope: number | null, out: Selection): Selection {
  const m = code[at];
  let k = 0;
  if (m > 1) {
    const r = Math.random() * code[at + 2];
    while (k < m - 1 && code[at + 3 + 3 * k] <= r) k++;
  }
  const v = at + 3 + 3 * k;
  out.records = blob.subarray(code[v + 1], code[v + 2]);
  out.count = code[at + 1];
  out.scope = scope;
  return out;
}

/** The paths that need objects: ECS (scopes) and IPv6 clients, both rare. */
export interface SlowPaths {
  selectEcs(ecs: Ecs, now: number, qtype: number, out: Selection): Selection;
  holdsV6(i: number, client: string): boolean;
}

/** An entry with rules: what the query path reads sits on the entry itself, and `select`
 * is one function shared by every entry (called as its method), not a closure per entry. */
export interface RuledAnswers extends CompiledAnswers {
  select: Selector;
  code: Int32Array;
  blob: Buffer;
  slow: SlowPaths;
}

// The common case: the client's own address, no scope.
export function selectRecords(this: RuledAnswers, client: string, ecs: Ecs | null, now: number, qtype: number, out: Selection): Selection {
  if (ecs) return this.slow.selectEcs(ecs, now, qtype, out);
  const code = this.code;
  const n = code[0];
  let v4 = -2; // not read yet
  let i = 0;
  for (; i < n; i++) {
    if ((code[HEADER + i * STRIDE] & HAS_NETWORKS) !== 0) {
      if (v4 === -2) v4 = ipv4Of(client);
      if (v4 >= 0 ? !holdsV4(code, i, v4) : !this.slow.holdsV6(i, client)) continue;
    }
    if (windowAt(code, i, now)) break;
  }
  return select(code, this.blob, descriptorOf(code, i, qtype), null, out);
}
