// The address table: the names divert answers itself. One interface, two stores
// (memory-table.ts, redis-table.ts); the query path reaches it through answer-cache.ts.

/** Days of the week as rules name them. */
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Day = (typeof DAYS)[number];

/**
 * Load sharing over an answer's addresses. `weights` maps an address of the answer to a
 * whole number 0–1000 (an address without one weighs 1). Each query puts one address
 * first, chosen with probability weight / sum of the family's weights; the others follow
 * by weight (a family that weighs 0 in all is shared equally). With `pick`, only that
 * many addresses of each family are answered.
 */
export interface Sharing {
  weights?: Record<string, number>;
  pick?: number;
}

/**
 * A local rule: evaluated per query, in order, before the entry's own addresses; the first
 * whose every given condition holds gives the answer. A family it does not list is
 * answered from the entry's own list.
 */
export interface Rule extends Sharing {
  /** Client networks (CIDR): the query's EDNS Client Subnet when it comes from a trusted
   * resolver (--trust-ecs), else the source address. */
  networks?: string[];
  /** Days of the week, in `tz` (absent: every day). */
  days?: Day[];
  /** A local time window "HH:MM"–"HH:MM" in `tz`, start included, end excluded; an end
   * before the start runs past midnight; "24:00" is the end of the day. Both or neither. */
  from?: string;
  to?: string;
  /** IANA time zone of `days` and the window (absent: UTC). */
  tz?: string;
  a?: string[];
  aaaa?: string[];
}

export interface EntryData extends Sharing {
  /** IPv4 addresses, dotted quad. */
  a: string[];
  /** IPv6 addresses, canonical text form. */
  aaaa: string[];
  ttl: number;
  /** Local rules, first match wins; absent when there are none. */
  rules?: Rule[];
}

export interface Entry extends EntryData {
  /** Lower-case name without the trailing dot; `*.` as the whole leftmost label marks a wildcard. */
  name: string;
  /** Grows with every change of this entry; taken from a table-wide sequence. */
  version: number;
  /** ISO 8601 time of the last change. */
  updatedAt: string;
}

/** One change of the table: `entry` is null when the name was deleted. */
export interface ChangeEvent {
  name: string;
  entry: Entry | null;
  version: number;
}

export type ChangeListener = (event: ChangeEvent) => void;

export interface WriteOptions {
  /** Compare-and-set: apply only when the entry's current version is this one (0: absent). */
  ifVersion?: number;
  /** Who asked for the change (a monitor's name, "zone seed", "admin"), kept in the history. */
  by?: string;
}

/** The answerable part of an entry before or after a change (null: absent). */
export type EntryState = EntryData | null;

/** One change of one entry, as kept in its history (newest first, bounded). */
export interface HistoryRecord {
  version: number;
  /** ISO 8601. */
  at: string;
  op: 'put' | 'delete' | 'divert' | 'import' | 'seed';
  by: string;
  old: EntryState;
  new: EntryState;
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

/**
 * The names that may answer `name`, most specific first: itself, then `*.` + each
 * ancestor. There is no root wildcard: `*` alone would capture every name.
 */
export function wildcardCandidates(name: string): string[] {
  const out = [name];
  let dot = name.indexOf('.');
  while (dot !== -1) {
    const candidate = '*' + name.slice(dot);
    if (candidate !== name) out.push(candidate);
    dot = name.indexOf('.', dot + 1);
  }
  return out;
}
