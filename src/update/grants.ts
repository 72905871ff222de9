// Which names each TSIG key may change by DNS UPDATE: the `update-policy` rules of the key
// file (key-file.ts reads them), a subset of BIND's. Rules are held in order and the
// first that matches a name and type decides, grant or deny, as in BIND; a name no rule
// matches is refused, so a key without a grant may change nothing.

import { UpdateFailure, UpdateRcode, type Change, type Family, type UpdateRequest } from './update.js';

export interface Grant {
  /** `grant` (true) or `deny`. */
  allow: boolean;
  /** The key's name, as TsigKey.name. */
  key: string;
  /** `name`: exactly this name; `subdomain`: the name and every name below it. */
  match: 'name' | 'subdomain';
  /** Lower case without the trailing dot; '' is the root (only in `subdomain .`). */
  name: string;
  /** The record types it covers (none listed, or ANY: both). */
  families: readonly Family[];
  /** Its line in the key file, for messages. */
  line: number;
}

/** At or below `domain` ('' is the root, above every name). */
function isAtOrBelow(name: string, domain: string): boolean {
  return domain === '' || name === domain || name.endsWith('.' + domain);
}

function matches(grant: Grant, name: string): boolean {
  return grant.match === 'name' ? name === grant.name : isAtOrBelow(name, grant.name);
}

/**
 * Whether the key may send updates in `zone` at all: the zone is covered by one of its
 * grants or lies above a granted name. The root lies above every name, but counts only
 * for a key granted `subdomain .`, written out.
 */
function reachesZone(grants: readonly Grant[], zone: string): boolean {
  return grants.some((g) => g.allow && (matches(g, zone) || (zone !== '' && isAtOrBelow(g.name, zone))));
}

function familiesOf(change: Change): Family[] {
  return change.kind === 'delete-name' ? ['a', 'aaaa'] : [change.family];
}

/**
 * Throws UpdateFailure REFUSED unless `key`'s rules grant every change of `request`: its
 * zone, and each name with each record type it changes (deleting a whole name changes
 * both A and AAAA). Prerequisites only read, and need no grant.
 */
export function authorize(rules: readonly Grant[], key: string, request: UpdateRequest): void {
  const own = rules.filter((g) => g.key === key);
  const refuse = (why: string) => new UpdateFailure(UpdateRcode.REFUSED, `key "${key}" ${why}`);
  if (!own.some((g) => g.allow)) throw refuse('has no grant in the update-policy of the key file, so it may change nothing');
  if (!reachesZone(own, request.zone)) throw refuse(`has no grant in zone "${request.zone || '.'}"`);
  for (const [name, changes] of request.changes) {
    for (const family of new Set(changes.flatMap(familiesOf))) {
      const rule = own.find((g) => matches(g, name) && g.families.includes(family));
      const what = `"${name}" (${family.toUpperCase()})`;
      if (!rule) throw refuse(`has no grant for ${what}`);
      if (!rule.allow) throw refuse(`may not change ${what}: denied by the update-policy rule on line ${rule.line}`);
    }
  }
}

/** The keys that no rule grants anything: they may change nothing. */
export function keysWithoutGrant(keys: Iterable<string>, rules: readonly Grant[]): string[] {
  return [...keys].filter((key) => !rules.some((g) => g.allow && g.key === key));
}
