// The address table: the names divert answers itself. One interface, two stores
// (memory-table.ts, redis-table.ts); the query path reaches it through answer-cache.ts.

import type { ChangeListener, Entry, EntryData, HistoryRecord } from '../entry/entry.js';

export interface WriteOptions {
  /** Compare-and-set: apply only when the entry's current version is this one (0: absent). */
  ifVersion?: number;
  /** Who asked for the change (a monitor's name, "zone seed", "admin"), kept in the history. */
  by?: string;
}

/** How many changes each entry's history keeps. */
export const HISTORY_LENGTH = 50;

export interface ListPage {
  entries: Entry[];
  /** Opaque; absent on the last page. */
  cursor?: string;
}

export interface AddressTable {
  /** The entry stored under exactly this name (wildcards are not expanded). */
  get(name: string): Promise<Entry | null>;
  /**
   * The entry that answers `name`: its own, or else the closest `*.parent` wildcard.
   * `candidates` are the names to try in order (see wildcardCandidates()).
   * A store that holds everything in process answers synchronously.
   */
  lookup(candidates: readonly string[]): Entry | null | Promise<Entry | null>;
  list(options: { prefix?: string; cursor?: string; limit: number }): Promise<ListPage>;
  /** Create or replace. Throws DivertError VERSION_MISMATCH when ifVersion does not hold. */
  put(name: string, data: EntryData, options?: WriteOptions): Promise<Entry>;
  /** Throws NOT_FOUND when absent, VERSION_MISMATCH when ifVersion does not hold. */
  delete(name: string, options?: WriteOptions): Promise<void>;
  /** Insert the entries whose names the table does not hold yet; returns those inserted. */
  seed(entries: ReadonlyMap<string, EntryData>, options?: { by?: string }): Promise<Entry[]>;
  /**
   * Create or replace every entry given, in one atomic step: all or nothing. Names not
   * given are left alone. Returns the entries written.
   */
  importEntries(entries: ReadonlyMap<string, EntryData>, options?: { by?: string }): Promise<Entry[]>;
  /**
   * In one atomic step, every entry that answers `from` answers `to` instead (same address
   * family; `to` is not listed twice). Returns the entries changed, each one version up.
   */
  divert(from: string, to: string, options?: { by?: string }): Promise<Entry[]>;
  /** The entry's recent changes, newest first (empty for a name never written). */
  history(name: string): Promise<HistoryRecord[]>;
  /** Every change, made here or (for shared stores) elsewhere. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Called when changes may have been missed (a shared store reconnected): everything
   * derived from the table must be read again.
   */
  onResync(listener: () => void): () => void;
  /** Whether the store can be read and written now (a shared store may be unreachable). */
  isReady(): boolean;
  /** Number of entries. */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** What the query path needs of a table: lookups and the news of changes. A worker's
 * replica of the primary's table (replica-table.ts) is one too. */
export type TableView = Pick<AddressTable, 'lookup' | 'onChange' | 'onResync'>;

/** The entry of the first candidate held in `entries`. */
export function lookupIn(entries: ReadonlyMap<string, Entry>, candidates: readonly string[]): Entry | null {
  for (const candidate of candidates) {
    const entry = entries.get(candidate);
    if (entry) return entry;
  }
  return null;
}

