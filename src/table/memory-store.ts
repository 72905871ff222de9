// The embedded store: the table in process, a Map from name to entry with each name's
// history. Atomic by construction (one event loop); what it is handed is already checked
// by the table layer (address-table.ts).

import { DivertError } from '../errors.js';
import type { CheckedData } from '../entry/check.js';
import type { ChangeEvent, ChangeListener, Entry, EntryData, HistoryRecord } from '../entry/entry.js';
import { divertData, stateOf, type Diversion } from '../entry/entry-ops.js';
import type { TableName } from '../entry/names.js';
import { compareAddresses, diversionSteps, recordOf, type DiversionListener, type DiversionRecord } from '../entry/diversions.js';
import { ChangeListeners, DiversionListeners, ResyncListeners } from './change-listeners.js';
import { compareNames, freezeEntry, versionMismatch } from './store-ops.js';
import { EntryMap, HISTORY_LENGTH, type Diverted, type ListPage, type Store, type StoreWrite } from './table.js';

export interface MemoryStoreOptions {
  /** Clock for `updatedAt`; injectable so tests get stable times. */
  now?: () => Date;
  /** Receives exceptions thrown by change listeners (they never reach the writer). */
  onError?: (err: Error) => void;
}

export class MemoryStore implements Store {
  private readonly entries = new EntryMap();
  /** Newest first, at most HISTORY_LENGTH each; kept after a delete. */
  private readonly histories = new Map<string, HistoryRecord[]>();
  private readonly listeners: ChangeListeners;
  private readonly resyncListeners = new ResyncListeners();
  /** The diversions in force, by from. */
  private readonly records = new Map<string, DiversionRecord>();
  private readonly diversionListeners: DiversionListeners;
  private readonly now: () => Date;
  /** Table-wide, so a name deleted and created again still gets a higher version. */
  private seq = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? (() => new Date());
    this.listeners = new ChangeListeners(options.onError);
    this.diversionListeners = new DiversionListeners(options.onError);
  }

  async get(name: TableName): Promise<Entry | null> {
    return this.entries.get(name) ?? null;
  }

  lookupName(name: string): Entry | null {
    return this.entries.lookupName(name);
  }

  /** Every entry now, for a worker's replica; changes after this come through onChange. */
  snapshot(): Entry[] {
    return [...this.entries.values()];
  }

  // Sorts all matching names on every page: O(n log n) per call. Fine for the table sizes
  // an admin lists; a sorted index would be the next step if that changes.
  async list(options: { prefix: string; cursor?: string; limit: number }): Promise<ListPage> {
    const after = options.cursor;
    const names = [...this.entries.keys()]
      .filter((n) => n.startsWith(options.prefix) && (after === undefined || n > after))
      .sort(compareNames);
    const page = names.slice(0, options.limit);
    const entries = page.map((n) => this.entries.get(n) as Entry);
    return names.length > options.limit ? { entries, cursor: page[page.length - 1] } : { entries };
  }

  async put(name: TableName, data: CheckedData, write: StoreWrite): Promise<Entry> {
    const current = this.entries.get(name)?.version ?? 0;
    if (write.ifVersion !== undefined && write.ifVersion !== current) throw versionMismatch('put', name, write.ifVersion, current);
    const entry = this.store(name, data, 'put', write.by);
    this.emit({ name, entry, version: entry.version });
    return entry;
  }

  async delete(name: TableName, write: StoreWrite): Promise<void> {
    const current = this.entries.get(name);
    // Absent wins over a version mismatch: "not there" is the more useful answer.
    if (!current) throw new DivertError('NOT_FOUND', `delete "${name}": no such entry`);
    if (write.ifVersion !== undefined && write.ifVersion !== current.version) {
      throw versionMismatch('delete', name, write.ifVersion, current.version);
    }
    this.entries.delete(name);
    const version = ++this.seq;
    this.record(name, { version, at: this.now().toISOString(), op: 'delete', by: write.by, old: stateOf(current), new: null });
    this.emit({ name, entry: null, version });
  }

  async seed(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]> {
    const at = this.now().toISOString(); // one step, one time, as in the Redis store
    const inserted: Entry[] = [];
    for (const [name, data] of entries) {
      if (this.entries.has(name)) continue;
      inserted.push(this.store(name, data, 'seed', by, at));
    }
    for (const entry of inserted) this.emit({ name: entry.name, entry, version: entry.version });
    return inserted;
  }

  async importEntries(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]> {
    const at = this.now().toISOString();
    const written = [...entries].map(([name, data]) => this.store(name, data, 'import', by, at));
    for (const entry of written) this.emit({ name: entry.name, entry, version: entry.version });
    return written;
  }

  // Visits every entry: O(n) per call. The Redis store keeps a reverse index instead,
  // as its entries are not in process.
  async divert({ field, from, to }: Diversion, by: string): Promise<Diverted> {
    const at = this.now().toISOString();
    const names = [...this.entries.keys()].sort(compareNames);
    const changed: Entry[] = [];
    for (const name of names) {
      const data = divertData(this.entries.get(name) as Entry, field, from, to);
      if (data !== null) changed.push(this.store(name, data, 'divert', by, at));
    }
    const steps = diversionSteps(this.records, from, to, by, at).map((step) => ({ ...step, version: ++this.seq }));
    for (const step of steps) {
      const record = recordOf(step);
      if (record) this.records.set(step.from, Object.freeze(record));
      else this.records.delete(step.from);
    }
    for (const entry of changed) this.emit({ name: entry.name, entry, version: entry.version });
    for (const step of steps) this.diversionListeners.emit(Object.freeze(step));
    return { changed, diversion: this.records.get(from) ?? null };
  }

  async diversions(): Promise<DiversionRecord[]> {
    return [...this.records.values()].sort((x, y) => compareAddresses(x.from, y.from));
  }

  async deleteDiversion(from: string, by: string): Promise<DiversionRecord> {
    const record = this.records.get(from);
    if (!record) throw new DivertError('NOT_FOUND', `no diversion of ${from} is in force`);
    this.records.delete(from);
    const at = this.now().toISOString();
    this.diversionListeners.emit(Object.freeze({ action: 'delete', from, to: record.to, by, at, version: ++this.seq }));
    return record;
  }

  onDiversion(listener: DiversionListener): () => void {
    return this.diversionListeners.add(listener);
  }

  async history(name: TableName): Promise<HistoryRecord[]> {
    return [...(this.histories.get(name) ?? [])];
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
    this.diversionListeners.clear();
  }

  private store(name: string, data: EntryData, op: HistoryRecord['op'], by: string, at = this.now().toISOString()): Entry {
    const old = this.entries.get(name);
    const entry = freezeEntry({ name, ...data, version: ++this.seq, updatedAt: at, updatedBy: by });
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
