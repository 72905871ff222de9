// Rules both stores keep alike (authors, versions, order, frozen entries), so they cannot drift apart.

import { DivertError } from '../errors.js';
import type { Entry, EntryData } from '../entry/entry.js';
import { checkEntryData } from '../entry/check.js';
import { normalizeName } from '../entry/names.js';

/** Who made a change when the caller does not say. */
export const UNKNOWN_AUTHOR = 'unknown';
export const SEED_AUTHOR = 'zone seed';

export function authorOf(options: { by?: string } | undefined, fallback = UNKNOWN_AUTHOR): string {
  const by = options?.by;
  return by === undefined || by === '' ? fallback : String(by);
}

/**
 * Normalised, validated copies of the entries to import, in the order given. A bad entry
 * throws its own error code with the entry's name in front, so a caller importing
 * hundreds of names learns which one; two spellings of one name are refused, as either
 * choice would silently drop data.
 */
export function checkImport(entries: ReadonlyMap<string, EntryData>): Map<string, EntryData> {
  const checked = new Map<string, EntryData>();
  const spelling = new Map<string, string>();
  for (const [name, data] of entries) {
    const key = normalizeName(name);
    const earlier = spelling.get(key);
    if (earlier !== undefined) {
      throw new DivertError('BAD_NAME', `import "${name}": the same name as "${earlier}", given twice`);
    }
    spelling.set(key, name);
    try {
      checked.set(key, checkEntryData(data));
    } catch (err) {
      if (err instanceof DivertError) throw new DivertError(err.code, `import "${key}": ${err.message}`, { cause: err });
      throw err;
    }
  }
  return checked;
}

/** Rejects an ifVersion that can never match, so a typo does not read as a lost race. */
export function checkIfVersion(name: string, ifVersion: number | undefined): void {
  if (ifVersion === undefined) return;
  if (!Number.isSafeInteger(ifVersion) || ifVersion < 0) {
    throw new DivertError('VERSION_MISMATCH', `"${name}": ifVersion ${String(ifVersion)} is not a whole number >= 0`);
  }
}

export function versionMismatch(op: string, name: string, expected: number, current: number): DivertError {
  const show = (v: number) => (v === 0 ? '0 (absent)' : String(v));
  return new DivertError(
    'VERSION_MISMATCH',
    `${op} "${name}": expected version ${show(expected)}, current version is ${show(current)}`,
  );
}

/** Entries are shared with callers (lookup returns them without copying), so freeze them. */
export function freezeEntry(entry: Entry): Entry {
  return deepFreeze(entry);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Code-unit order, not locale order: stable across hosts and consistent with cursors. */
export function compareNames(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
