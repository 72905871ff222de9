// Names, addresses and TTLs as the table accepts them. Every writer (zone files, the
// admin API, stores reading back their own data) goes through these checks.

import { isIPv4, isIPv6 } from 'node:net';
import { DivertError, showValue, type ErrorCode } from '../errors.js';
import { checkLocalRules } from '../rules/check.js';
import { canonicalName } from '../wire/name.js';
import type { EntryData } from './table.js';

export const MAX_TTL_SECONDS = 86400;
export const DEFAULT_TTL_SECONDS = 30;

/**
 * The table's form of a name given in presentation format (wire/name.ts canonicalName):
 * ASCII letters in lower case, octets other than letters, digits, "-", "_" and "*" as
 * \DDD, no trailing dot. Any name DNS can carry is accepted, escapes and all; `*` as the
 * whole leftmost label marks a wildcard, which needs a parent.
 */
export function normalizeName(input: string): string {
  const name = canonicalName(input);
  if (name === '') throw new DivertError('BAD_NAME', `name "${input}" is empty (the root cannot be intercepted)`);
  if (name === '*') throw new DivertError('BAD_NAME', `name "${input}": a wildcard needs a parent, as in "*.example.com"`);
  return name;
}

export function isWildcard(name: string): boolean {
  return name.startsWith('*.');
}

/** Canonical IPv6 text (lower case, zeros compressed) so duplicates are found. */
export function canonicalIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** `value` in canonical form when it is an address of the family (`a`: IPv4, `aaaa`: IPv6), else null. */
export function canonicalAddress(field: 'a' | 'aaaa', value: string): string | null {
  if (field === 'a') return isIPv4(value) ? value : null;
  return isIPv6(value) && !value.includes('%') ? canonicalIPv6(value) : null;
}

/** Why `value` is not an address of the family, for a message that names the field before it. */
export function notAnAddress(field: 'a' | 'aaaa', value: unknown): string {
  if (typeof value !== 'string') return 'expected an address string';
  return `"${value}" is not an ${field === 'a' ? 'IPv4' : 'IPv6'} address`;
}

/**
 * A list of one family's addresses in canonical form. `path` names the list in messages
 * (a rule's own list is "rules[2].a"), `code` is the error code of a refusal.
 */
export function checkAddresses(field: 'a' | 'aaaa', list: unknown, path: string = field, code: ErrorCode = 'BAD_ADDRESS'): string[] {
  if (!Array.isArray(list)) throw new DivertError(code, `${path}: expected a list of addresses`);
  const seen = new Set<string>();
  return list.map((value, i) => {
    const address = typeof value === 'string' ? canonicalAddress(field, value) : null;
    if (address === null) throw new DivertError(code, `${path}[${i}]: ${notAnAddress(field, value)}`);
    const before = seen.size;
    if (seen.add(address).size === before) throw new DivertError(code, `${path}[${i}]: "${value}" is listed twice`);
    return address;
  });
}

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
export function checkEntryData(data: EntryInput): EntryData {
  const out: EntryData = {
    a: checkAddresses('a', data.a ?? []),
    aaaa: checkAddresses('aaaa', data.aaaa ?? []),
    ttl: checkTtl(data.ttl ?? DEFAULT_TTL_SECONDS),
  };
  if (data.weights === undefined && data.pick === undefined && data.rules === undefined) return out;
  return checkLocalRules(out, data);
}
