// Diversions kept as records: "traffic for the original destination `from` goes to `to`",
// what POST /v1/diversions leaves behind besides the entries it rewrites, and what
// `divert proxy` follows for address targets. How a new diversion changes the records is
// decided here, once, for the embedded store; the Redis divert script does the same.

import { checkAddress } from './entry-ops.js';

/** One diversion in force: addresses in canonical form, who made it and when (ISO 8601). */
export interface DiversionRecord {
  from: string;
  to: string;
  by: string;
  at: string;
}

/**
 * One change of the records, as /v1/events sends it: `set` (created or replaced) or
 * `delete` (gone; `to` is where it pointed). `by` and `at` are the change's, and `version`
 * comes from the table's sequence, like an entry's.
 */
export interface DiversionChange extends DiversionRecord {
  action: 'set' | 'delete';
  version: number;
}

export type DiversionListener = (change: DiversionChange) => void;

/** A change before the store has given it its version. */
export type DiversionStep = Omit<DiversionChange, 'version'>;

/** The `from` of a diversion to read or delete: an address of either family, canonical. */
export function checkDiversionFrom(value: unknown): string {
  return checkAddress('from', value).address;
}

/**
 * What posting `from` → `to` does to the records, in order. Records never chain: one
 * lookup of an original destination gives where its traffic goes now.
 *  - A diversion back (`to` → `from` is in force) undoes it: that record goes and none is
 *    made for `from`.
 *  - Otherwise `to` is followed through its own record (`to` → Z makes `from` → Z), and
 *    `from` → that address is set, replacing `from`'s earlier record if any.
 *  - Every record A → `from` follows the answers to the same address (A → `to`, or Z),
 *    and goes when that is A itself.
 */
export function diversionSteps(
  records: ReadonlyMap<string, DiversionRecord>,
  from: string,
  to: string,
  by: string,
  at: string,
): DiversionStep[] {
  const target = records.get(to);
  const undo = target?.to === from;
  const final = target && !undo ? target.to : to;
  const steps: DiversionStep[] = [];
  // in code-unit order of from, as the Redis script sorts them
  for (const record of [...records.values()].sort((x, y) => (x.from < y.from ? -1 : x.from > y.from ? 1 : 0))) {
    if (record.to !== from) continue;
    if (record.from === final) steps.push({ action: 'delete', from: record.from, to: record.to, by, at });
    else steps.push({ action: 'set', from: record.from, to: final, by, at });
  }
  if (!undo) steps.push({ action: 'set', from, to: final, by, at });
  return steps;
}

/** The record a change leaves (null: none), by from. */
export function recordOf(step: DiversionStep): DiversionRecord | null {
  return step.action === 'set' ? { from: step.from, to: step.to, by: step.by, at: step.at } : null;
}

/** The 16 bytes of an address (IPv4 mapped), as hex text that sorts in address order. */
function sortKey(address: string): string {
  if (!address.includes(':'))
    return (
      '0'.repeat(24) +
      address
        .split('.')
        .map((part) => Number(part).toString(16).padStart(2, '0'))
        .join('')
    );
  const [head, tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = address.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return '1' + groups.map((g) => g.padStart(4, '0')).join('');
}

/** IPv4 before IPv6, each in numeric order: how GET /v1/diversions lists the records. */
export function compareAddresses(x: string, y: string): number {
  const p = sortKey(x);
  const q = sortKey(y);
  return p < q ? -1 : p > q ? 1 : 0;
}
