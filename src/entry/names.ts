// Names as the table holds them: the canonical text the query path reads off the wire
// (wire/name.ts), a wildcard as `*.` before a parent, and the wildcards that may answer a
// name.

import { DivertError } from '../errors.js';
import { canonicalName } from '../wire/name.js';

declare const tableName: unique symbol;
/** A name in the table's form (normalizeName made it): what the stores take as a key. */
export type TableName = string & { readonly [tableName]: true };

/**
 * The table's form of a name given in presentation format (wire/name.ts canonicalName):
 * ASCII letters in lower case, octets other than letters, digits, "-", "_" and "*" as
 * \DDD, no trailing dot. Any name DNS can carry is accepted, escapes and all; `*` as the
 * whole leftmost label marks a wildcard, which needs a parent.
 */
export function normalizeName(input: string): TableName {
  const name = canonicalName(input);
  if (name === '') throw new DivertError('BAD_NAME', `name "${input}" is empty (the root cannot be intercepted)`);
  if (name === '*') throw new DivertError('BAD_NAME', `name "${input}": a wildcard needs a parent, as in "*.example.com"`);
  return name as TableName;
}

export function isWildcard(name: string): boolean {
  return name.startsWith('*.');
}

/**
 * The names that may answer `name`, most specific first: itself, then `*.` + each
 * ancestor. There is no root wildcard: `*` alone would capture every name.
 */
export function wildcardCandidates(name: string): string[] {
  const out = [name];
  let dot = name.indexOf('.');
  while (dot !== -1) {
    const candidate = '*' + name.slice(dot);
    if (candidate !== name) out.push(candidate);
    dot = name.indexOf('.', dot + 1);
  }
  return out;
}
