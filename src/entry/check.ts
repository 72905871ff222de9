// An entry's data as the table accepts it: checked once, where it enters (the admin API,
// a zone file, DNS UPDATE, a store reading back its own data), into CheckedData, which
// is what the table layer and the stores take and trust.

import { DivertError, showValue } from '../errors.js';
import { checkAddresses } from './addresses.js';
import { checkLocalRules } from './check-rules.js';
import type { EntryData } from './entry.js';

declare const checked: unique symbol;
/** Entry data that checkEntryData checked and normalised. */
export type CheckedData = EntryData & { readonly [checked]: true };

export const MAX_TTL_SECONDS = 86400;
export const DEFAULT_TTL_SECONDS = 30;

export function checkTtl(ttl: unknown): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL_SECONDS) {
    throw new DivertError('BAD_TTL', `ttl: ${typeof ttl === 'object' && ttl !== null ? showValue(ttl) : `"${String(ttl)}"`} is not a whole number of seconds from 0 to ${MAX_TTL_SECONDS}`);
  }
  return ttl;
}

/** What a writer may hand in as an entry's data; every field is checked. */
export interface EntryInput {
  a?: unknown;
  aaaa?: unknown;
  ttl?: unknown;
  weights?: unknown;
  pick?: unknown;
  rules?: unknown;
}

/**
 * Validated, normalised copy of an entry's data. Load sharing and rules are present only
 * when given and not empty, so a plain entry reads back exactly as before.
 */
export function checkEntryData(data: EntryInput): CheckedData {
  const out = {
    a: checkAddresses('a', data.a ?? []),
    aaaa: checkAddresses('aaaa', data.aaaa ?? []),
    ttl: checkTtl(data.ttl ?? DEFAULT_TTL_SECONDS),
  };
  if (data.weights === undefined && data.pick === undefined && data.rules === undefined) return out as CheckedData;
  return checkLocalRules(out, data) as CheckedData;
}
