// The table layer: the one way in to the address table for every writer (the admin API,
// DNS UPDATE, zone seeds, imports) and reader. Names are normalised and entries checked
// here, once — data entry/check.ts has already checked (a zone file's records) is not
// checked again — the write policy is applied (--max-addresses, --allow-tld-wildcards),
// and the store below (memory or Redis) only offers atomic primitives over what it is
// handed, which it trusts.

import { DivertError } from '../errors.js';
import { ensureChecked, type CheckedData, type EntryInput } from '../entry/check.js';
import type { ChangeListener, Entry, HistoryRecord } from '../entry/entry.js';
import { checkDiversion } from '../entry/entry-ops.js';
import { normalizeName, type TableName } from '../entry/names.js';
import { checkDiversionFrom, type DiversionListener, type DiversionRecord } from '../entry/diversions.js';
import { authorOf, SEED_AUTHOR } from './store-ops.js';
import type { Diverted, ListPage, Store, TableView } from './table.js';
import { WritePolicy } from './write-policy.js';

export interface WriteOptions {
  /** Compare-and-set: apply only when the entry's current version is this one (0: absent). */
  ifVersion?: number;
  /** Who asked for the change (a monitor's name, "zone seed", "admin"), kept in the history. */
  by?: string;
}

/** Rejects an ifVersion that can never match, so a typo does not read as a lost race. */
function checkIfVersion(name: string, ifVersion: number | undefined): void {
  if (ifVersion === undefined) return;
  if (!Number.isSafeInteger(ifVersion) || ifVersion < 0) {
    throw new DivertError('VERSION_MISMATCH', `"${name}": ifVersion ${String(ifVersion)} is not a whole number >= 0`);
  }
}

/** `what "name": message`, keeping the code: an import of hundreds of names says which one. */
function about(what: string, name: string, err: unknown): unknown {
  return err instanceof DivertError ? new DivertError(err.code, `${what} "${name}": ${err.message}`, { cause: err }) : err;
}

export class AddressTable implements TableView {
  constructor(
    private readonly store: Store,
    /** What a write may put in the table; writers that must check several entries before writing any (DNS UPDATE) ask it too. */
    readonly policy: WritePolicy = WritePolicy.DEFAULT,
  ) {}

  /** The entry stored under exactly this name (wildcards are not expanded). */
  async get(name: string): Promise<Entry | null> {
    return this.store.get(normalizeName(name));
  }

  lookupName(name: string): Entry | null | Promise<Entry | null> {
    return this.store.lookupName(name);
  }

  async list(options: { prefix?: string; cursor?: string; limit: number }): Promise<ListPage> {
    return this.store.list({
      prefix: (options.prefix ?? '').toLowerCase(),
      cursor: options.cursor,
      limit: Math.max(1, Math.floor(options.limit)),
    });
  }

  /** Create or replace. Throws DivertError VERSION_MISMATCH when ifVersion does not hold. */
  async put(name: string, data: EntryInput, options: WriteOptions = {}): Promise<Entry> {
    const key = normalizeName(name);
    const checked = ensureChecked(data);
    this.policy.checkEntry(key, checked);
    checkIfVersion(key, options.ifVersion);
    return this.store.put(key, checked, { ifVersion: options.ifVersion, by: authorOf(options) });
  }

  /** Throws NOT_FOUND when absent, VERSION_MISMATCH when ifVersion does not hold. */
  async delete(name: string, options: WriteOptions = {}): Promise<void> {
    const key = normalizeName(name);
    checkIfVersion(key, options.ifVersion);
    return this.store.delete(key, { ifVersion: options.ifVersion, by: authorOf(options) });
  }

  /** Inserts the entries whose names the table does not hold yet (the first spelling of a name wins); returns those inserted. */
  async seed(entries: ReadonlyMap<string, EntryInput>, options: { by?: string } = {}): Promise<Entry[]> {
    const checked = new Map<TableName, CheckedData>();
    for (const [name, data] of entries) {
      const key = normalizeName(name);
      if (checked.has(key)) continue;
      checked.set(key, this.checkEntry('seed', key, data));
    }
    if (checked.size === 0) return [];
    return this.store.seed(checked, authorOf(options, SEED_AUTHOR));
  }

  /**
   * Creates or replaces every entry given, in one atomic step: all of it is checked
   * before anything is written, and two spellings of one name are refused, as either
   * choice would silently drop data. Returns the entries written.
   */
  async importEntries(entries: ReadonlyMap<string, EntryInput>, options: { by?: string } = {}): Promise<Entry[]> {
    const checked = new Map<TableName, CheckedData>();
    const spelling = new Map<string, string>();
    for (const [name, data] of entries) {
      const key = normalizeName(name);
      const earlier = spelling.get(key);
      if (earlier !== undefined) throw new DivertError('BAD_NAME', `import "${name}": the same name as "${earlier}", given twice`);
      spelling.set(key, name);
      checked.set(key, this.checkEntry('import', key, data));
    }
    if (checked.size === 0) return [];
    return this.store.importEntries(checked, authorOf(options));
  }

  /**
   * In one atomic step, every entry that answers `from` answers `to` instead (same address
   * family), and the diversion is kept as a record (diversionSteps() says how it changes
   * the records). Returns the entries changed, each one version up, and `from`'s record.
   * Not held against the write policy: a diversion never adds an address or a name.
   */
  async divert(from: unknown, to: unknown, options: { by?: string } = {}): Promise<Diverted> {
    return this.store.divert(checkDiversion(from, to), authorOf(options));
  }

  /** The diversions in force, by `from` in address order. */
  diversions(): Promise<DiversionRecord[]> {
    return this.store.diversions();
  }

  /** Removes `from`'s diversion record (BAD_ADDRESS for a non-address, NOT_FOUND for none); the entries stay as they are. */
  async deleteDiversion(from: unknown, options: { by?: string } = {}): Promise<DiversionRecord> {
    return this.store.deleteDiversion(checkDiversionFrom(from), authorOf(options));
  }

  onDiversion(listener: DiversionListener): () => void {
    return this.store.onDiversion(listener);
  }

  async history(name: string): Promise<HistoryRecord[]> {
    return this.store.history(normalizeName(name));
  }

  onChange(listener: ChangeListener): () => void {
    return this.store.onChange(listener);
  }

  onResync(listener: () => void): () => void {
    return this.store.onResync(listener);
  }

  /** Whether the store can be read and written now (a shared store may be unreachable). */
  isReady(): boolean {
    return this.store.isReady();
  }

  size(): Promise<number> {
    return this.store.size();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private checkEntry(what: string, key: TableName, data: EntryInput): CheckedData {
    let checked: CheckedData;
    try {
      checked = ensureChecked(data);
    } catch (err) {
      throw about(what, key, err);
    }
    this.policy.checkEntry(key, checked, `${what} `);
    return checked;
  }
}
