// AddressTable held in process: a Map from name to Entry, for tests and single-node use.

import { DivertError } from '../errors.js';
import { ChangeListeners } from './change-listeners.js';
import type {
  AddressTable,
  ChangeEvent,
  ChangeListener,
  Entry,
  EntryData,
  ListPage,
  WriteOptions,
} from './table.js';
import { checkEntryData, normalizeName } from './validate.js';

export interface MemoryTableOptions {
  /** Clock for `updatedAt`; injectable so tests get stable times. */
  now?: () => Date;
  /** Receives exceptions thrown by change listeners (they never reach the writer). */
  onError?: (err: Error) => void;
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
  Object.freeze(entry.a);
  Object.freeze(entry.aaaa);
  return Object.freeze(entry);
}

/** Code-unit order, not locale order: stable across hosts and consistent with cursors. */
export function compareNames(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

export class MemoryTable implements AddressTable {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners: ChangeListeners;
  private readonly now: () => Date;
  /** Table-wide, so a name deleted and created again still gets a higher version. */
  private seq = 0;

  constructor(options: MemoryTableOptions = {}) {
    this.now = options.now ?? (() => new Date());
    this.listeners = new ChangeListeners(options.onError);
  }

  async get(name: string): Promise<Entry | null> {
    return this.entries.get(normalizeName(name)) ?? null;
  }

  lookup(candidates: readonly string[]): Entry | null {
    for (const candidate of candidates) {
      const entry = this.entries.get(candidate);
      if (entry) return entry;
    }
    return null;
  }

  // Sorts all matching names on every page: O(n log n) per call. Fine for the table sizes
  // an admin lists; a sorted index would be the next step if that changes.
  async list(options: { prefix?: string; cursor?: string; limit: number }): Promise<ListPage> {
    const prefix = (options.prefix ?? '').toLowerCase();
    const after = options.cursor;
    const limit = Math.max(1, Math.floor(options.limit));
    const names = [...this.entries.keys()]
      .filter((n) => n.startsWith(prefix) && (after === undefined || n > after))
      .sort(compareNames);
    const page = names.slice(0, limit);
    const entries = page.map((n) => this.entries.get(n) as Entry);
    return names.length > limit ? { entries, cursor: page[page.length - 1] } : { entries };
  }

  async put(name: string, data: EntryData, options: WriteOptions = {}): Promise<Entry> {
    const key = normalizeName(name);
    const checked = checkEntryData(data);
    checkIfVersion(key, options.ifVersion);
    const current = this.entries.get(key)?.version ?? 0;
    if (options.ifVersion !== undefined && options.ifVersion !== current) {
      throw versionMismatch('put', key, options.ifVersion, current);
    }
    const entry = this.store(key, checked);
    this.emit({ name: key, entry, version: entry.version });
    return entry;
  }

  async delete(name: string, options: WriteOptions = {}): Promise<void> {
    const key = normalizeName(name);
    checkIfVersion(key, options.ifVersion);
    const current = this.entries.get(key);
    // Absent wins over a version mismatch: "not there" is the more useful answer.
    if (!current) throw new DivertError('NOT_FOUND', `delete "${key}": no such entry`);
    if (options.ifVersion !== undefined && options.ifVersion !== current.version) {
      throw versionMismatch('delete', key, options.ifVersion, current.version);
    }
    this.entries.delete(key);
    this.emit({ name: key, entry: null, version: ++this.seq });
  }

  async seed(entries: ReadonlyMap<string, EntryData>): Promise<Entry[]> {
    // Validate everything first so a bad entry leaves the table untouched.
    const checked = [...entries].map(([name, data]) => [normalizeName(name), checkEntryData(data)] as const);
    const inserted: Entry[] = [];
    for (const [name, data] of checked) {
      if (this.entries.has(name)) continue;
      inserted.push(this.store(name, data));
    }
    for (const entry of inserted) this.emit({ name: entry.name, entry, version: entry.version });
    return inserted;
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  async size(): Promise<number> {
    return this.entries.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private store(name: string, data: EntryData): Entry {
    const entry = freezeEntry({ name, ...data, version: ++this.seq, updatedAt: this.now().toISOString() });
    this.entries.set(name, entry);
    return entry;
  }

  private emit(event: ChangeEvent): void {
    this.listeners.emit(event);
  }
}
