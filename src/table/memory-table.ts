// AddressTable held in process: a Map from name to Entry, for tests and single-node use.

import { DivertError } from '../errors.js';
import { ChangeListeners, ResyncListeners } from './change-listeners.js';
import { HISTORY_LENGTH, type AddressTable, type ListPage, type WriteOptions, lookupIn } from './table.js';
import { type ChangeEvent, type ChangeListener, type Entry, type EntryData, type HistoryRecord } from '../entry/entry.js';
import { SEED_AUTHOR, authorOf, checkIfVersion, checkImport, compareNames, freezeEntry, versionMismatch } from './store-ops.js';
import { checkDiversion, divertData, stateOf } from '../entry/entry-ops.js';
import { checkEntryData } from '../entry/check.js';
import { normalizeName } from '../entry/names.js';

export interface MemoryTableOptions {
  /** Clock for `updatedAt`; injectable so tests get stable times. */
  now?: () => Date;
  /** Receives exceptions thrown by change listeners (they never reach the writer). */
  onError?: (err: Error) => void;
}

export class MemoryTable implements AddressTable {
  private readonly entries = new Map<string, Entry>();
  /** Newest first, at most HISTORY_LENGTH each; kept after a delete. */
  private readonly histories = new Map<string, HistoryRecord[]>();
  private readonly listeners: ChangeListeners;
  private readonly resyncListeners = new ResyncListeners();
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
    return lookupIn(this.entries, candidates);
  }

  /** Every entry now, for a worker's replica; changes after this come through onChange. */
  snapshot(): Entry[] {
    return [...this.entries.values()];
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
    const entry = this.store(key, checked, 'put', authorOf(options));
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
    const version = ++this.seq;
    this.record(key, { version, at: this.now().toISOString(), op: 'delete', by: authorOf(options), old: stateOf(current), new: null });
    this.emit({ name: key, entry: null, version });
  }

  async seed(entries: ReadonlyMap<string, EntryData>, options: { by?: string } = {}): Promise<Entry[]> {
    // Validate everything first so a bad entry leaves the table untouched.
    const checked = [...entries].map(([name, data]) => [normalizeName(name), checkEntryData(data)] as const);
    const by = authorOf(options, SEED_AUTHOR);
    const at = this.now().toISOString(); // one step, one time, as in the Redis store
    const inserted: Entry[] = [];
    for (const [name, data] of checked) {
      if (this.entries.has(name)) continue;
      inserted.push(this.store(name, data, 'seed', by, at));
    }
    for (const entry of inserted) this.emit({ name: entry.name, entry, version: entry.version });
    return inserted;
  }

  async importEntries(entries: ReadonlyMap<string, EntryData>, options: { by?: string } = {}): Promise<Entry[]> {
    const checked = checkImport(entries); // all of it before any write: all or nothing
    const by = authorOf(options);
    const at = this.now().toISOString();
    const written = [...checked].map(([name, data]) => this.store(name, data, 'import', by, at));
    for (const entry of written) this.emit({ name: entry.name, entry, version: entry.version });
    return written;
  }

  // Visits every entry: O(n) per call. The Redis store keeps a reverse index instead,
  // as its entries are not in process.
  async divert(from: string, to: string, options: { by?: string } = {}): Promise<Entry[]> {
    const { field, from: old, to: replacement } = checkDiversion(from, to);
    const by = authorOf(options);
    const at = this.now().toISOString();
    const names = [...this.entries.keys()].sort(compareNames);
    const changed: Entry[] = [];
    for (const name of names) {
      const entry = this.entries.get(name) as Entry;
      const data = divertData(entry, field, old, replacement);
      if (data === null) continue;
      changed.push(this.store(name, data, 'divert', by, at));
    }
    for (const entry of changed) this.emit({ name: entry.name, entry, version: entry.version });
    return changed;
  }

  async history(name: string): Promise<HistoryRecord[]> {
    return [...(this.histories.get(normalizeName(name)) ?? [])];
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  /** Registers and never fires: nothing in process can be missed. */
  onResync(listener: () => void): () => void {
    return this.resyncListeners.add(listener);
  }

  /** Always: nothing in process can be unreachable. */
  isReady(): boolean {
    return true;
  }

  async size(): Promise<number> {
    return this.entries.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.resyncListeners.clear();
  }

  private store(name: string, data: EntryData, op: HistoryRecord['op'], by: string, at = this.now().toISOString()): Entry {
    const old = this.entries.get(name);
    const entry = freezeEntry({ name, ...data, version: ++this.seq, updatedAt: at });
    this.entries.set(name, entry);
    this.record(name, { version: entry.version, at: entry.updatedAt, op, by, old: stateOf(old), new: stateOf(entry) });
    return entry;
  }

  private record(name: string, record: HistoryRecord): void {
    const list = this.histories.get(name) ?? [];
    list.unshift(Object.freeze(record));
    if (list.length > HISTORY_LENGTH) list.length = HISTORY_LENGTH;
    this.histories.set(name, list);
  }

  private emit(event: ChangeEvent): void {
    this.listeners.emit(event);
  }
}
