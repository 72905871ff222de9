// The address table's stores: one narrow interface that the embedded store
// (memory-store.ts) and Redis (redis/redis-store.ts) implement with atomic primitives
// only. What a write may be is decided above them, once, in the table layer
// (address-table.ts); a store trusts the checked names and data it is given.

import type { ChangeListener, Entry, HistoryRecord } from '../entry/entry.js';
import type { CheckedData } from '../entry/check.js';
import { isWildcard, wildcardCandidates, type TableName } from '../entry/names.js';
import type { Diversion } from '../entry/entry-ops.js';
import type { DiversionListener, DiversionRecord } from '../entry/diversions.js';

/** How many changes each entry's history keeps. */
export const HISTORY_LENGTH = 50;

/** What a diversion did: the entries it rewrote, and the record it left for `from` (null: it undid one). */
export interface Diverted {
  changed: Entry[];
  diversion: DiversionRecord | null;
}

export interface ListPage {
  entries: Entry[];
  /** Opaque; absent on the last page. */
  cursor?: string;
}

/** A conditional write: applied only while the entry is at `ifVersion` (0: absent), when given. */
export interface StoreWrite {
  ifVersion?: number;
  /** Who asked for the change, kept in the history. */
  by: string;
}

/** What the query path needs of a table: lookups, the news of changes, and whether it can
 * be read now. A worker's replica of the primary's table (replica-table.ts) is one too. */
export interface TableView {
  /**
   * The entry that answers a name: its own, else its nearest wildcard's
   * (wildcardCandidates()). A store that holds everything in process answers
   * synchronously, and with one look at the name when it holds no wildcard.
   */
  lookupName(name: string): Entry | null | Promise<Entry | null>;
  /** Every change, made here or (for shared stores) elsewhere. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Called when changes may have been missed (a shared store reconnected): everything
   * derived from the table must be read again.
   */
  onResync(listener: () => void): () => void;
  /** Whether the store can be read now (a shared store may be unreachable). */
  isReady(): boolean;
}

/** A worker's view of the table: it also says when it has heard every change acknowledged so far. */
export interface WorkerView extends TableView {
  /** Resolves once every change published before this call has reached the view's listeners. */
  barrier(): Promise<void>;
  close(): Promise<void>;
}

export interface Store extends TableView {
  /** The entry stored under exactly this name (wildcards are not expanded). */
  get(name: TableName): Promise<Entry | null>;
  list(options: { prefix: string; cursor?: string; limit: number }): Promise<ListPage>;
  /** Create or replace. Throws DivertError VERSION_MISMATCH when ifVersion does not hold. */
  put(name: TableName, data: CheckedData, write: StoreWrite): Promise<Entry>;
  /** Throws NOT_FOUND when absent, VERSION_MISMATCH when ifVersion does not hold. */
  delete(name: TableName, write: StoreWrite): Promise<void>;
  /** Inserts, in one atomic step, the entries whose names the store does not hold yet; returns those inserted. */
  seed(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]>;
  /** Creates or replaces every entry given, in one atomic step: all or nothing. Returns the entries written. */
  importEntries(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]>;
  /**
   * In one atomic step, every entry that answers `from` answers `to` instead, and the
   * diversion records change as diversionSteps() says. Returns the entries changed, by name.
   */
  divert(diversion: Diversion, by: string): Promise<Diverted>;
  /** The diversions in force, by `from` in address order. */
  diversions(): Promise<DiversionRecord[]>;
  /** Removes the record of `from` (the entries are left as they are); returns it. Throws NOT_FOUND when there is none. */
  deleteDiversion(from: string, by: string): Promise<DiversionRecord>;
  /** Every change of the diversion records, made here or (for shared stores) elsewhere. */
  onDiversion(listener: DiversionListener): () => void;
  /** The entry's recent changes, newest first (empty for a name never written). */
  history(name: TableName): Promise<HistoryRecord[]>;
  /** Number of entries. */
  size(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Entries by name that count the wildcards among them. Most tables hold none, and then a
 * name is answered by one lookup, without building and hashing its wildcard candidates:
 * every forwarded query asks, and that was 3 lookups, 2 new strings and an array each
 * (with the rest of the name lookups, 4.6 % of a worker's CPU on a forwarding load).
 */
export class EntryMap extends Map<string, Entry> {
  private wildcards = 0;

  override set(name: string, entry: Entry): this {
    if (isWildcard(name) && !super.has(name)) this.wildcards++;
    return super.set(name, entry);
  }

  override delete(name: string): boolean {
    const deleted = super.delete(name);
    if (deleted && isWildcard(name)) this.wildcards--;
    return deleted;
  }

  override clear(): void {
    super.clear();
    this.wildcards = 0;
  }

  /** The entry that answers `name`: its own, or that of its nearest wildcard. */
  lookupName(name: string): Entry | null {
    const own = super.get(name);
    if (own !== undefined || this.wildcards === 0) return own ?? null;
    // the name itself, the first candidate, was looked at already
    const candidates = wildcardCandidates(name);
    for (let i = 1; i < candidates.length; i++) {
      const entry = super.get(candidates[i]);
      if (entry !== undefined) return entry;
    }
    return null;
  }
}
