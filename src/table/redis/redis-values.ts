// What the Redis store keeps in Redis, as text and back: an entry's JSON in the entries
// hash, a history record in a name's history list. Reading back is an edge like any
// other: what Redis holds is checked as a write would be.

import { checkEntryData } from '../../entry/check.js';
import type { Entry, EntryData, EntryState, HistoryRecord } from '../../entry/entry.js';
import { dataOf } from '../../entry/entry-ops.js';
import { freezeEntry } from '../store-ops.js';

const OPS: ReadonlySet<string> = new Set(['put', 'delete', 'divert', 'import', 'seed']);

export const dataJson = (data: EntryData): string => JSON.stringify(dataOf(data));

/** HSCAN MATCH pattern for names starting with `prefix`. */
export function globPrefix(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
}

export const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** {a, aaaa, ttl, weights?, pick?, rules?} checked like any write, or null when missing. */
function parseState(v: Record<string, unknown>): EntryData | null {
  if (!Array.isArray(v.a) || !Array.isArray(v.aaaa) || typeof v.ttl !== 'number') return null;
  return checkEntryData({ a: v.a, aaaa: v.aaaa, ttl: v.ttl, weights: v.weights, pick: v.pick, rules: v.rules });
}

/** A stored value (parsed JSON) as the entry of `name`; throws when it is not one. */
export function entryOf(name: string, value: unknown): Entry {
  const v = value as Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new Error('not a JSON object');
  const data = parseState(v);
  if (!data) throw new Error('a, aaaa or ttl missing');
  if (!Number.isSafeInteger(v.version) || (v.version as number) < 1) throw new Error('bad version');
  if (typeof v.updatedAt !== 'string') throw new Error('bad updatedAt');
  const entry: Entry = { name, ...data, version: v.version as number, updatedAt: v.updatedAt };
  // absent in entries written before divert kept it: those read as they did
  if (v.updatedBy !== undefined) {
    if (typeof v.updatedBy !== 'string') throw new Error('bad updatedBy');
    entry.updatedBy = v.updatedBy;
  }
  return freezeEntry(entry);
}

/** A history record as stored, or null when it is unreadable. */
export function parseHistory(raw: string): HistoryRecord | null {
  try {
    const v = JSON.parse(raw) as Record<string, unknown>;
    if (!Number.isSafeInteger(v.version) || typeof v.at !== 'string' || typeof v.by !== 'string') return null;
    if (typeof v.op !== 'string' || !OPS.has(v.op)) return null;
    const state = (s: unknown): EntryState | undefined => {
      if (s === null) return null;
      if (typeof s !== 'object') return undefined;
      const data = parseState(s as Record<string, unknown>);
      return data ? Object.freeze(data) : undefined;
    };
    const old = state(v.old);
    const next = state(v.new);
    if (old === undefined || next === undefined) return null;
    return Object.freeze({ version: v.version as number, at: v.at, op: v.op as HistoryRecord['op'], by: v.by, old, new: next });
  } catch {
    return null;
  }
}
