// The table in Redis, shared by every divert process: a hash of JSON entries, written
// only by Lua scripts (redis-scripts.ts), each one atomic and publishing its changes on
// the changes channel, which every store follows (redis-feed.ts). Lookups of names the
// in-process name filter says are absent (most forwarded traffic) need no Redis command
// (filter-upkeep.ts). Opened by open-redis.ts, the one place Redis is connected to.

import type { Redis } from 'ioredis';
import { DivertError, isDivertError } from '../../errors.js';
import { INSPECT } from '../../debug.js';
import type { CheckedData } from '../../entry/check.js';
import type { ChangeEvent, ChangeListener, Entry, HistoryRecord } from '../../entry/entry.js';
import { normalizeName, wildcardCandidates, type TableName } from '../../entry/names.js';
import type { Diversion } from '../../entry/entry-ops.js';
import type { DiversionChange, DiversionListener, DiversionRecord } from '../../entry/diversions.js';
import { ChangeListeners, ResyncListeners } from '../change-listeners.js';
import { compareNames, freezeEntry, versionMismatch } from '../store-ops.js';
import { HISTORY_LENGTH, type Diverted, type ListPage, type Store, type StoreWrite } from '../table.js';
import { FilterUpkeep } from './filter-upkeep.js';
import { OwnChanges } from './own-changes.js';
import type { ScriptCommands, TableClient } from './redis-client.js';
import type { ChangeFeed } from './redis-feed.js';
import { isDiversionChange, RedisDiversions } from './redis-diversions.js';
import type { RedisReporter } from './redis-reporter.js';
import { dataJson, entryOf, globPrefix, parseHistory, reason } from './redis-values.js';

export interface RedisStoreOptions {
  /** Prepended to every key and to the channels, e.g. `divert:`. */
  prefix: string;
  now?: () => Date;
  /** Keep the in-process name filter of every stored name, loaded on the first lookup(). Default true. */
  nameFilter?: boolean;
}

/** The connections of one store (open-redis.ts makes them). */
export interface RedisConnections {
  client: TableClient;
  /** For seed and import, whose one script may run long: a command timeout of its own. */
  bulk: () => TableClient;
  reporter: RedisReporter;
  /** Quits (or drops) every connection. */
  close(): Promise<void>;
}

export class RedisStore implements Store {
  private readonly listeners: ChangeListeners;
  private readonly resyncListeners: ResyncListeners;
  private readonly entriesKey: string;
  private readonly seqKey: string;
  /** `${prefix}{table}:`, the start of every key; the Lua scripts build history and addr keys from it. */
  private readonly base: string;
  readonly channel: string;
  private readonly client: TableClient;
  private readonly reporter: RedisReporter;
  private readonly own: OwnChanges<ChangeEvent | DiversionChange>;
  /** The diversion records and their channel. */
  private readonly records: RedisDiversions;
  private readonly filter: FilterUpkeep;
  private feed: ChangeFeed | undefined;

  constructor(
    private readonly connections: RedisConnections,
    private readonly options: RedisStoreOptions,
  ) {
    this.client = connections.client;
    this.reporter = connections.reporter;
    this.base = `${options.prefix}{table}:`;
    this.entriesKey = `${this.base}entries`;
    this.seqKey = `${this.base}seq`;
    this.channel = `${options.prefix}changes`;
    this.listeners = new ChangeListeners((err) => this.reporter.report(err));
    this.resyncListeners = new ResyncListeners((err) => this.reporter.report(err));
    this.records = new RedisDiversions(this.base, `${options.prefix}diversions`, this.reporter);
    this.own = new OwnChanges((event) => this.emit(event));
    this.filter = new FilterUpkeep(
      {
        count: () => this.reporter.run('HLEN', () => this.client.hlen(this.entriesKey)),
        scan: async (cursor, count) => {
          // Redis before 7.4 has no NOVALUES: the values come along and are dropped
          const [next, flat] = await this.reporter.run('HSCAN', () => this.client.hscan(this.entriesKey, cursor, 'COUNT', count));
          return [next, flat.filter((_, i) => i % 2 === 0)];
        },
        report: (err) => this.reporter.report(err),
        rebuiltWithNewNames: () => this.resyncListeners.emit(),
      },
      options.nameFilter !== false,
    );
  }

  /** The change feed is attached once connected (open-redis.ts). */
  attach(feed: ChangeFeed): void {
    this.feed = feed;
  }

  /** True while commands can be sent. Checks the socket too: after the peer hangs up,
   *  ioredis still says 'ready' until it processes the close. */
  isReady(): boolean {
    if (this.client.isCluster) return this.client.status === 'ready';
    const stream = (this.client as Redis).stream as { writable?: boolean } | undefined;
    return this.client.status === 'ready' && stream?.writable === true;
  }

  async get(name: TableName): Promise<Entry | null> {
    const raw = await this.reporter.run('HGET', () => this.client.hget(this.entriesKey, name));
    return raw === null ? null : this.parse(name, raw);
  }

  /**
   * With the name filter loaded, candidates it does not hold are skipped, and when none is
   * left the answer is null at once, without Redis. Otherwise one HMGET for the
   * candidates left; the first readable one answers.
   */
  lookupName(name: string): Entry | null | Promise<Entry | null> {
    const candidates = wildcardCandidates(name);
    const filter = this.filter.serving();
    if (filter === null) return this.read(candidates);
    let maybe: string[] | undefined;
    for (let i = 0; i < candidates.length; i++) {
      if (filter.has(candidates[i])) (maybe ??= []).push(candidates[i]);
    }
    if (maybe === undefined) {
      this.filter.skips++;
      return null;
    }
    return this.read(maybe);
  }

  /** Loads the name filter now (lookupName() starts it by itself); resolves true once loaded, false when it failed (it is retried). */
  loadFilter(): Promise<boolean> {
    return this.filter.load();
  }

  /** For tests and debugging (debug.ts): the name filter's figures. */
  [INSPECT](): { ready: boolean; size: number; loads: number; skips: number } {
    return { ready: this.filter.ready, size: this.filter.size, loads: this.filter.loads, skips: this.filter.skips };
  }

  // Scans every matching name and sorts on each page: O(n log n) per call plus a full
  // HSCAN. Acceptable for admin listings of a few thousand names; a sorted-set index
  // would make paging O(limit) if tables grow.
  async list(options: { prefix: string; cursor?: string; limit: number }): Promise<ListPage> {
    const after = options.cursor;
    const found = new Map<string, string>(); // HSCAN may return a field twice
    let cursor = '0';
    do {
      const [next, flat] = await this.reporter.run('HSCAN', () =>
        this.client.hscan(this.entriesKey, cursor, 'MATCH', globPrefix(options.prefix), 'COUNT', 1000),
      );
      for (let i = 0; i + 1 < flat.length; i += 2) found.set(flat[i], flat[i + 1]);
      cursor = next;
    } while (cursor !== '0');
    const entries: Entry[] = [];
    const names = [...found.keys()].filter((n) => after === undefined || n > after).sort(compareNames);
    let i = 0;
    for (; i < names.length && entries.length < options.limit; i++) {
      const entry = this.parse(names[i], found.get(names[i]) as string);
      if (entry) entries.push(entry);
    }
    const more = names.slice(i).some((n) => this.parse(n, found.get(n) as string, false) !== null);
    return more ? { entries, cursor: entries[entries.length - 1].name } : { entries };
  }

  async put(name: TableName, data: CheckedData, write: StoreWrite): Promise<Entry> {
    const updatedAt = this.now().toISOString();
    const ifVersion = write.ifVersion === undefined ? '' : String(write.ifVersion);
    const [status, version] = await this.write('put', () =>
      this.script(this.client, 'divertPut', [name, ifVersion, dataJson(data)], updatedAt, write.by),
    );
    if (status === 'MISMATCH') {
      this.own.settle([]);
      throw versionMismatch('put', name, write.ifVersion as number, version);
    }
    const entry = freezeEntry({ name, ...data, version, updatedAt, updatedBy: write.by });
    this.own.settle([{ name, entry, version }]);
    return entry;
  }

  async delete(name: TableName, write: StoreWrite): Promise<void> {
    const ifVersion = write.ifVersion === undefined ? '' : String(write.ifVersion);
    const [status, version] = await this.write('delete', () =>
      this.script(this.client, 'divertDelete', [name, ifVersion], this.now().toISOString(), write.by),
    );
    if (status !== 'OK') this.own.settle([]);
    if (status === 'NOT_FOUND') throw new DivertError('NOT_FOUND', `delete "${name}": no such entry`);
    if (status === 'MISMATCH') throw versionMismatch('delete', name, write.ifVersion as number, version);
    this.own.settle([{ name, entry: null, version }]);
  }

  // One script for the whole seed keeps it atomic; a very large seed blocks Redis for
  // its duration (some 40 µs a name).
  seed(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]> {
    return this.writeEntries('seed', 'divertSeed', entries, by);
  }

  // Atomic like seed, and blocks Redis for its duration the same way.
  importEntries(entries: ReadonlyMap<TableName, CheckedData>, by: string): Promise<Entry[]> {
    return this.writeEntries('import', 'divertImport', entries, by);
  }

  // The script reads only the set of names answering `from` (the reverse index), so its
  // cost follows the entries changed, not the table's size.
  // The diversion records change in the same script, so entries and records never disagree.
  async divert({ field, from, to }: Diversion, by: string): Promise<Diverted> {
    const [entries, messages] = await this.write('divert', () =>
      this.script(this.client, 'divertDivert', [field, from, to, this.records.channel], this.now().toISOString(), by),
    );
    const changed: Entry[] = [];
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const entry = this.parse(String(entries[i]), String(entries[i + 1]));
      if (entry) changed.push(entry);
    }
    const steps = messages.map((raw) => this.records.change(String(raw))).filter((step) => step !== null);
    this.own.settle([...changed.map((entry) => ({ name: entry.name, entry, version: entry.version })), ...steps]);
    const last = steps.filter((step) => step.from === from).pop();
    const diversion = last?.action === 'set' ? { from, to: last.to, by: last.by, at: last.at } : null;
    return { changed: changed.sort((x, y) => compareNames(x.name, y.name)), diversion };
  }

  diversions(): Promise<DiversionRecord[]> {
    return this.records.list(this.client);
  }

  async deleteDiversion(from: string, by: string): Promise<DiversionRecord> {
    const reply = await this.write('delete diversion', () =>
      this.script(this.client, 'divertDeleteDiversion', [from, this.records.channel], this.now().toISOString(), by),
    );
    const step = reply && this.records.change(String(reply[1]));
    this.own.settle(step ? [step] : []);
    const record = reply && this.records.record(String(reply[0]));
    if (!record) throw new DivertError('NOT_FOUND', `no diversion of ${from} is in force`);
    return record;
  }

  onDiversion(listener: DiversionListener): () => void {
    return this.records.onChange(listener);
  }

  async history(name: TableName): Promise<HistoryRecord[]> {
    const key = `${this.base}history:${name}`;
    const raws = await this.reporter.run('LRANGE', () => this.client.lrange(key, 0, HISTORY_LENGTH - 1));
    const records: HistoryRecord[] = [];
    for (const raw of raws) {
      const record = parseHistory(raw);
      if (record) records.push(record);
      else this.reporter.reportOnce(key, raw, `a record in ${key} is unreadable; left out`);
    }
    return records;
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  onResync(listener: () => void): () => void {
    return this.resyncListeners.add(listener);
  }

  /** HLEN: counts unreadable entries too. */
  async size(): Promise<number> {
    return this.reporter.run('HLEN', () => this.client.hlen(this.entriesKey));
  }

  /** Resolves once the changes published before this call have reached this store's listeners. */
  async barrier(): Promise<void> {
    await this.feed?.barrier();
  }

  /** Builds the reverse index of addresses, for stores written before it existed (open-redis.ts). */
  async index(): Promise<void> {
    await this.reporter.run('index', () => this.script(this.client, 'divertIndex', []));
  }

  async close(): Promise<void> {
    this.filter.close();
    this.listeners.clear();
    this.resyncListeners.clear();
    this.records.listeners.clear();
    this.feed?.close();
    await this.connections.close();
  }

  /** One message from the changes or the diversions channel. */
  received(channel: string, raw: string): void {
    const event = channel === this.records.channel ? this.records.change(raw) : this.parseMessage(raw);
    // a change we cannot read is a change listeners (and the name filter) miss
    if (!event) this.resync();
    else this.own.received(event);
  }

  /** Changes may have been missed: listeners read again, the name filter is rebuilt. */
  resync(): void {
    this.filter.resync();
    this.resyncListeners.emit();
  }

  /** The channels the change feed follows. */
  get channels(): string[] {
    return [this.channel, this.records.channel];
  }

  /** Delivers one change of an entry to the name filter, then to this store's listeners; a record's to the diversions' listeners. */
  private emit(event: ChangeEvent | DiversionChange): void {
    if (isDiversionChange(event)) return this.records.listeners.emit(event);
    this.filter.apply(event);
    this.listeners.emit(event);
  }

  private async read(candidates: readonly string[]): Promise<Entry | null> {
    const raws = await this.reporter.run('HMGET', () => this.client.hmget(this.entriesKey, ...candidates));
    for (let i = 0; i < candidates.length; i++) {
      const raw = raws[i];
      if (raw === null || raw === undefined) continue;
      const entry = this.parse(candidates[i], raw);
      if (entry) return entry;
    }
    return null;
  }

  private now(): Date {
    return this.options.now ? this.options.now() : new Date();
  }

  /** Calls one write script with the keys and leading arguments every script takes. */
  private script<K extends keyof ScriptCommands>(
    client: TableClient,
    name: K,
    args: string[],
    at = '',
    by = '',
  ): ReturnType<ScriptCommands[K]> {
    const call = client[name] as (...a: (string | string[])[]) => ReturnType<ScriptCommands[K]>;
    // the arguments as one list, which ioredis flattens: spread, an import of 100k names
    // would pass 200k arguments and overflow the stack
    return call.call(client, this.entriesKey, this.seqKey, this.base, this.channel, at, by, args);
  }

  /** seed and import: name/data pairs in, name/version pairs back. */
  private async writeEntries(
    what: 'seed' | 'import',
    script: 'divertSeed' | 'divertImport',
    entries: ReadonlyMap<TableName, CheckedData>,
    by: string,
  ): Promise<Entry[]> {
    if (entries.size === 0) return [];
    const updatedAt = this.now().toISOString();
    const args: string[] = [];
    for (const [name, data] of entries) args.push(name, dataJson(data));
    // the bulk connection queues what comes before it is up: refuse at once while Redis is away
    if (!this.isReady()) throw new DivertError('BACKEND_UNAVAILABLE', `${this.reporter.where}: ${what} refused: Redis is not connected`);
    const reply = await this.write(what, () => this.script(this.connections.bulk(), script, args, updatedAt, by));
    const written: Entry[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const name = String(reply[i]) as TableName;
      const data = entries.get(name) as CheckedData;
      written.push(freezeEntry({ name, ...data, version: Number(reply[i + 1]), updatedAt, updatedBy: by }));
    }
    this.own.settle(written.map((entry) => ({ name: entry.name, entry, version: entry.version })));
    return written;
  }

  /**
   * Runs one write script; the caller must settle it once it succeeded. A write sent to a
   * connected Redis that then fails (Redis died before replying) may have been applied:
   * that is OUTCOME_UNKNOWN, not a refusal, so a client reads before retrying.
   */
  private async write<T>(what: string, call: () => Promise<T>): Promise<T> {
    this.own.begin();
    const sent = this.isReady();
    try {
      return await this.reporter.run(what, call);
    } catch (err) {
      this.own.failed();
      if (sent && isDivertError(err, 'BACKEND_UNAVAILABLE')) {
        throw new DivertError(
          'OUTCOME_UNKNOWN',
          `${err.message}; Redis went away with the write sent, so it may have been applied: read the entry (its version) before writing again`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** A stored value as an Entry, or null (reported once per distinct value) when unreadable. */
  private parse(name: string, raw: string, reportBad = true): Entry | null {
    try {
      return entryOf(name, JSON.parse(raw));
    } catch (err) {
      if (reportBad)
        this.reporter.reportOnce(name, raw, `entry "${name}" in ${this.entriesKey} is unreadable (${reason(err)}); treated as absent`);
      return null;
    }
  }

  private parseMessage(raw: string): ChangeEvent | null {
    try {
      const m = JSON.parse(raw) as { name?: unknown; entry?: unknown; version?: unknown };
      if (typeof m?.name !== 'string' || !Number.isSafeInteger(m.version)) throw new Error('name or version missing');
      const name = normalizeName(m.name);
      const version = m.version as number;
      if (m.entry === null) return { name, entry: null, version };
      const entry = entryOf(name, m.entry);
      if (entry.version !== version) throw new Error('entry and message versions differ');
      return { name, entry, version };
    } catch (err) {
      this.reporter.reportOnce(this.channel, raw, `a message on ${this.channel} is unreadable (${reason(err)}); listeners told to resync`);
      return null;
    }
  }
}
