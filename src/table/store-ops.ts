// Rules both stores keep alike (authors, versions, order, frozen entries), so they cannot drift apart.

import { DivertError } from '../errors.js';
import type { Entry } from '../entry/entry.js';
import { deepFreeze } from '../entry/check.js';

/** Who made a change when the caller does not say. */
export const UNKNOWN_AUTHOR = 'unknown';
export const SEED_AUTHOR = 'zone seed';

export function authorOf(options: { by?: string } | undefined, fallback = UNKNOWN_AUTHOR): string {
  const by = options?.by;
  return by === undefined || by === '' ? fallback : String(by);
}

export function versionMismatch(op: string, name: string, expected: number, current: number): DivertError {
  const show = (v: number) => (v === 0 ? '0 (absent)' : String(v));
  return new DivertError('VERSION_MISMATCH', `${op} "${name}": expected version ${show(expected)}, current version is ${show(current)}`);
}

/** Entries are shared with callers (lookup returns them without copying), so freeze them. */
export function freezeEntry(entry: Entry): Entry {
  return deepFreeze(entry);
}

/** Code-unit order, not locale order: stable across hosts and consistent with cursors. */
export function compareNames(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
