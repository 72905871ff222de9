// Addresses as the table holds them: IPv4 dotted quads and canonical IPv6 text, so the
// same address is always the same string.

import { isIPv4, isIPv6 } from 'node:net';
import { DivertError, type ErrorCode } from '../errors.js';

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
