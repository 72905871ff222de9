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
    throw new DivertError(
      'BAD_TTL',
      `ttl: ${typeof ttl === 'object' && ttl !== null ? showValue(ttl) : `"${String(ttl)}"`} is not a whole number of seconds from 0 to ${MAX_TTL_SECONDS}`,
    );
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
  const result = data.weights === undefined && data.pick === undefined && data.rules === undefined ? out : checkLocalRules(out, data);
  checkedObjects.add(deepFreeze(result));
  return result as CheckedData;
}

/** The objects checkEntryData returned, frozen so that they stay as checked: data handed on is not checked twice. */
const checkedObjects = new WeakSet<object>();

/** `value` and everything in it frozen. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** `data` as checked data: as it is when checkEntryData made it, else checked now. */
export function ensureChecked(data: EntryInput): CheckedData {
  return checkedObjects.has(data) ? (data as CheckedData) : checkEntryData(data);
}
