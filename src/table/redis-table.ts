// AddressTable in Redis, shared by every divert process: a hash of JSON entries, written only by Lua scripts.
// Lookups of names an in-process filter of every stored name says are absent (most
// forwarded traffic) are answered without Redis; see name-filter.ts.

import type { Redis } from 'ioredis';
import { maskUrl } from '../redact.js';
import { ChangeListeners, ResyncListeners } from './change-listeners.js';
import { DivertError, isDivertError } from '../errors.js';
import { HISTORY_LENGTH, type AddressTable, type ListPage, type WriteOptions } from './table.js';
import { type ChangeEvent, type ChangeListener, type Entry, type EntryData, type EntryState, type HistoryRecord } from '../entry/entry.js';
import { checkEntryData } from '../entry/check.js';
import { normalizeName } from '../entry/names.js';
import { SEED_AUTHOR, authorOf, checkIfVersion, checkImport, compareNames, freezeEntry, versionMismatch } from './store-ops.js';
import { checkDiversion, dataOf } from '../entry/entry-ops.js';
import { createClient, createSubscriber, type ScriptCommands, type TableClient } from './redis-client.js';
import { ChangeFeed } from './redis-feed.js';
import { parseRedisUrl } from './redis-url.js';
import { NameFilter } from './name-filter.js';
import { OwnVersions } from './own-versions.js';

export { parseRedisUrl, type RedisTarget } from './redis-url.js';

export interface RedisTableOptions {
  /** redis://, rediss://, redis-sentinel:// or redis-cluster:// (see parseRedisUrl). */
  url: string;
  /** Prepended to every key and to the changes channel, e.g. `divert:`. */
  prefix: string;
  /** Per command; a dead Redis must not stall the query path. Default 500. */
  commandTimeoutMs?: number;
  /** How long connect() keeps trying before giving up. Default 5000. */
  connectTimeoutMs?: number;
  now?: () => Date;
  /** Unreadable stored entries, listener exceptions and connection loss (once per outage). */
  onError?: (err: Error) => void;
  /**
   * Keep an in-process filter of every stored name, loaded on the first lookup(), so
   * lookups of names not in the table need no Redis command. Default true.
   */
  nameFilter?: boolean;
}

/** HSCAN MATCH pattern for names starting with `prefix`. */
export function globPrefix(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
}

const dataJson = (data: EntryData) => JSON.stringify(dataOf(data));
const OPS: ReadonlySet<string> = new Set(['put', 'delete', 'divert', 'import', 'seed']);
/** Names per HSCAN page when loading the name filter: ~1 MB of reply, a few ms of Redis time. */
const FILTER_PAGE = 5000;
/** After a failed filter load, try again this much later (a resync also starts one). */
const FILTER_RETRY_MS = 1000;

export class RedisTable implements AddressTable {
  private readonly listeners: ChangeListeners;
  private readonly resyncListeners: ResyncListeners;
  private readonly reported = new Set<string>();
  private readonly entriesKey: string;
  private readonly seqKey: string;
  /** `${prefix}{table}:`, the start of every key; the Lua scripts build history and addr keys from it. */
  private readonly base: string;
  private readonly channel: string;
  private readonly where: string;
  private feed: ChangeFeed | undefined;
  /** Until connect() returns, connection errors are only kept for its own error message. */
  private connected = false;
  /** Per connection: an outage is reported once, when it starts. */
  private readonly down = { main: false, feed: false };
  private lastError: Error | undefined;

  // Own-change de-duplication. A write's script publishes its change on the subscriber
  // connection while its reply comes back on the command connection; either may arrive
  // first. So messages that arrive while this instance has writes in flight are held
  // until those writes have returned their versions; a message whose version is one of
  // ours was already emitted and is dropped, any other is emitted.
  private inFlight = 0;
  /** A queue: `held[heldAt]` is the oldest (shift() would copy a long one per message). */
  private held: ChangeEvent[] = [];
  private heldAt = 0;
  private readonly own = new OwnVersions();

  // The name filter (name-filter.ts): every name in the entries hash, so lookup() can say
  // "not intercepted" without Redis. `filter` serves lookups once loaded; `building` is the
  // one being loaded (first load, or rebuild after a resync while the old one keeps
  // serving). Every change event is applied to both, from the moment `building` exists.
  private filter: NameFilter | null = null;
  private building: NameFilter | null = null;
  private loading: Promise<boolean> | null = null;
  /** Bumped by a resync (a running load starts over) and by close (it stops). */
  private filterGeneration = 0;
  /** Set by the first loadFilter(): from then on the filter is kept (retried, rebuilt). */
  private filterWanted = false;
  private filterRetry: NodeJS.Timeout | undefined;
  /** A load failed and none completed since: further failures are not reported again. */
  private filterFailing = false;
  private closed = false;
  /** Completed filter loads, first and rebuilt. */
  filterLoads = 0;
  /** Lookups answered "absent" by the filter alone. */
  filterSkips = 0;

  private constructor(
    private readonly client: TableClient,
    private readonly options: RedisTableOptions,
    private readonly password: string,
  ) {
    this.base = `${options.prefix}{table}:`;
    this.entriesKey = `${this.base}entries`;
    this.seqKey = `${this.base}seq`;
    this.channel = `${options.prefix}changes`;
    this.where = `redis at ${maskUrl(options.url)}`;
    this.listeners = new ChangeListeners((err) => this.report(err));
    this.resyncListeners = new ResyncListeners((err) => this.report(err));
    // Without a listener an 'error' event would crash the process.
    client.on('error', (err: Error) => this.connectionError('main', err));
    client.on('node error', (err: Error) => this.connectionError('main', err));
    client.on('ready', () => (this.down.main = false));
  }

  static async connect(options: RedisTableOptions): Promise<RedisTable> {
    const target = parseRedisUrl(options.url);
    const timeouts = { connectTimeoutMs: options.connectTimeoutMs ?? 5000, commandTimeoutMs: options.commandTimeoutMs ?? 500 };
    const table = new RedisTable(createClient(target, timeouts), options, target.password);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeouts.connectTimeoutMs);
    });
    try {
      const ready = new Promise<void>((resolve) => table.client.once('ready', () => resolve()));
      table.client.connect().catch(() => {}); // failures are retried by the retry strategy until the deadline
      if ((await Promise.race([ready, timedOut])) === 'timeout') throw table.unreachable(timeouts.connectTimeoutMs);
      const feed = new ChangeFeed(createSubscriber(target, table.client, timeouts), table.channel, {
        message: (raw) => table.received(raw),
        resync: () => {
          table.down.feed = false;
          table.resync();
        },
        error: (err) => table.connectionError('feed', err),
      });
      table.feed = feed;
      feed.start();
      // Changes made after connect() returns must reach this table: wait for the subscription.
      if ((await Promise.race([feed.ready, timedOut])) === 'timeout') throw table.unreachable(timeouts.connectTimeoutMs, 'change feed ');
      await table.run('index', () => table.script('divertIndex', []));
      table.connected = true;
    } catch (err) {
      await table.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return table;
  }

  /** True while commands can be sent. Checks the socket too: after the peer hangs up,
   *  ioredis still says 'ready' until it processes the close. */
  isReady(): boolean {
    if (this.client.isCluster) return this.client.status === 'ready';
    const stream = (this.client as Redis).stream as { writable?: boolean } | undefined;
    return this.client.status === 'ready' && stream?.writable === true;
  }

  async get(name: string): Promise<Entry | null> {
    const key = normalizeName(name);
    const raw = await this.run('HGET', () => this.client.hget(this.entriesKey, key));
    return raw === null ? null : this.parse(key, raw);
  }

  /**
   * With the name filter loaded, candidates it does not hold are skipped, and when none is
   * left the answer is null at once, without Redis. Otherwise one HMGET for the
   * candidates left; the first readable one answers.
   */
  lookup(candidates: readonly string[]): Entry | null | Promise<Entry | null> {
    if (candidates.length === 0) return null;
    const filter = this.filter;
    if (filter === null) {
      if (!this.filterWanted && this.options.nameFilter !== false && !this.closed) void this.loadFilter();
      return this.read(candidates);
    }
    let maybe: string[] | undefined;
    for (let i = 0; i < candidates.length; i++) {
      if (filter.has(candidates[i])) (maybe ??= []).push(candidates[i]);
    }
    if (maybe === undefined) {
      this.filterSkips++;
      return null;
    }
    return this.read(maybe);
  }

  /** True once the name filter serves lookups. */
  get filterReady(): boolean {
    return this.filter !== null;
  }

  /** Names in the serving name filter (0 before it is loaded). */
  get filterSize(): number {
    return this.filter?.size ?? 0;
  }

  /**
   * Loads the name filter unless a load is running (lookup() starts it by itself);
   * resolves true when that load completed, false when it failed (it is retried).
   * Never rejects.
   */
  loadFilter(): Promise<boolean> {
    this.filterWanted = true;
    if (this.loading === null) {
      const loading = this.buildFilter().finally(() => {
        if (this.loading === loading) this.loading = null;
      });
      this.loading = loading;
    }
    return this.loading;
  }

  private async read(candidates: readonly string[]): Promise<Entry | null> {
    const raws = await this.run('HMGET', () => this.client.hmget(this.entriesKey, ...candidates));
    for (let i = 0; i < candidates.length; i++) {
      const raw = raws[i];
      if (raw === null || raw === undefined) continue;
      const entry = this.parse(candidates[i], raw);
      if (entry) return entry;
    }
    return null;
  }

  // Scans every matching name and sorts on each page: O(n log n) per call plus a full
  // HSCAN. Acceptable for admin listings of a few thousand names; a sorted-set index
  // would make paging O(limit) if tables grow.
  async list(options: { prefix?: string; cursor?: string; limit: number }): Promise<ListPage> {
    const prefix = (options.prefix ?? '').toLowerCase();
    const after = options.cursor;
    const limit = Math.max(1, Math.floor(options.limit));
    const found = new Map<string, string>(); // HSCAN may return a field twice
    let cursor = '0';
    do {
      const [next, flat] = await this.run('HSCAN', () =>
        this.client.hscan(this.entriesKey, cursor, 'MATCH', globPrefix(prefix), 'COUNT', 1000),
      );
      for (let i = 0; i + 1 < flat.length; i += 2) found.set(flat[i], flat[i + 1]);
      cursor = next;
    } while (cursor !== '0');
    const entries: Entry[] = [];
    const names = [...found.keys()].filter((n) => after === undefined || n > after).sort(compareNames);
    let i = 0;
    for (; i < names.length && entries.length < limit; i++) {
      const entry = this.parse(names[i], found.get(names[i]) as string);
      if (entry) entries.push(entry);
    }
    const more = names.slice(i).some((n) => this.parse(n, found.get(n) as string, false) !== null);
    return more ? { entries, cursor: entries[entries.length - 1].name } : { entries };
  }

  async put(name: string, data: EntryData, options: WriteOptions = {}): Promise<Entry> {
    const key = normalizeName(name);
    const checked = checkEntryData(data);
    checkIfVersion(key, options.ifVersion);
    const updatedAt = this.now().toISOString();
    const ifVersion = options.ifVersion === undefined ? '' : String(options.ifVersion);
    const [status, version] = await this.write('put', () =>
      this.script('divertPut', [key, ifVersion, dataJson(checked)], updatedAt, authorOf(options)),
    );
    if (status === 'MISMATCH') {
      this.settle([]);
      throw versionMismatch('put', key, options.ifVersion as number, version);
    }
    const entry = freezeEntry({ name: key, ...checked, version, updatedAt });
    this.settle([{ name: key, entry, version }]);
    return entry;
  }

  async delete(name: string, options: WriteOptions = {}): Promise<void> {
    const key = normalizeName(name);
    checkIfVersion(key, options.ifVersion);
    const ifVersion = options.ifVersion === undefined ? '' : String(options.ifVersion);
    const [status, version] = await this.write('delete', () =>
      this.script('divertDelete', [key, ifVersion], this.now().toISOString(), authorOf(options)),
    );
    if (status !== 'OK') this.settle([]);
    if (status === 'NOT_FOUND') throw new DivertError('NOT_FOUND', `delete "${key}": no such entry`);
    if (status === 'MISMATCH') throw versionMismatch('delete', key, options.ifVersion as number, version);
    this.settle([{ name: key, entry: null, version }]);
  }

  // One script for the whole seed keeps it atomic; a very large seed blocks Redis for
  // its duration (roughly a few ms per thousand names).
  async seed(entries: ReadonlyMap<string, EntryData>, options: { by?: string } = {}): Promise<Entry[]> {
    const checked = new Map<string, EntryData>();
    for (const [name, data] of entries) {
      const key = normalizeName(name);
      if (!checked.has(key)) checked.set(key, checkEntryData(data)); // first spelling wins, as in MemoryTable
    }
    if (checked.size === 0) return [];
    return this.writeEntries('seed', 'divertSeed', checked, authorOf(options, SEED_AUTHOR));
  }

  // Atomic like seed, and blocks Redis for its duration the same way.
  async importEntries(entries: ReadonlyMap<string, EntryData>, options: { by?: string } = {}): Promise<Entry[]> {
    const checked = checkImport(entries); // all of it before the script: all or nothing
    if (checked.size === 0) return [];
    return this.writeEntries('import', 'divertImport', checked, authorOf(options));
  }

  // The script reads only the set of names answering `from` (the reverse index), so its
  // cost follows the entries changed, not the table's size.
  async divert(from: string, to: string, options: { by?: string } = {}): Promise<Entry[]> {
    const diversion = checkDiversion(from, to);
    const reply = await this.write('divert', () =>
      this.script('divertDivert', [diversion.field, diversion.from, diversion.to], this.now().toISOString(), authorOf(options)),
    );
    const changed: Entry[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const entry = this.parse(String(reply[i]), String(reply[i + 1]));
      if (entry) changed.push(entry);
    }
    this.settle(changed.map((entry) => ({ name: entry.name, entry, version: entry.version })));
    return changed.sort((x, y) => compareNames(x.name, y.name));
  }

  async history(name: string): Promise<HistoryRecord[]> {
    const key = `${this.base}history:${normalizeName(name)}`;
    const raws = await this.run('LRANGE', () => this.client.lrange(key, 0, HISTORY_LENGTH - 1));
    const records: HistoryRecord[] = [];
    for (const raw of raws) {
      const record = parseHistory(raw);
      if (record) records.push(record);
      else this.reportOnce(key, raw, `a record in ${key} is unreadable; left out`);
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
    return this.run('HLEN', () => this.client.hlen(this.entriesKey));
  }

  /** Resolves once the changes published before this call have reached this table's listeners. */
  async barrier(): Promise<void> {
    await this.feed?.barrier();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.filterGeneration++; // a running load stops at its next page
    clearTimeout(this.filterRetry);
    this.building = null;
    this.listeners.clear();
    this.resyncListeners.clear();
    this.feed?.close();
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
        return;
      } catch {
        // fall through: drop the socket instead
      }
    }
    this.client.disconnect();
  }

  /** Delivers one change to the name filters, then to this instance's listeners. */
  protected emit(event: ChangeEvent): void {
    if (event.entry === null) {
      this.filter?.delete(event.name);
      this.building?.delete(event.name);
    } else {
      this.filter?.add(event.name);
      this.building?.add(event.name);
    }
    this.listeners.emit(event);
  }

  /** Changes may have been missed: listeners read again, the name filter is rebuilt. */
  private resync(): void {
    if (this.loading !== null) {
      this.filterGeneration++; // the running load may have missed them too: it starts over
    } else if (this.filterWanted && !this.closed) {
      void this.loadFilter();
    }
    this.resyncListeners.emit();
  }

  /**
   * One load of the name filter: HSCAN of the entries hash into a new filter that receives
   * every change event from before the first page is asked for, so a name written while
   * the scan runs is in it either way. A name deleted while the scan runs may come back
   * in a page read before the delete but handled after its event: a stale fingerprint, so
   * lookups of it read Redis once and find nothing, never a wrong answer.
   */
  private async buildFilter(): Promise<boolean> {
    for (;;) {
      if (this.closed) return false;
      const generation = this.filterGeneration;
      const started = Date.now();
      try {
        const expected = await this.run('HLEN', () => this.client.hlen(this.entriesKey));
        if (generation !== this.filterGeneration) continue;
        const next = new NameFilter(expected);
        this.building = next;
        if (!(await this.scanInto(next, generation))) continue;
        this.building = null;
        const old = this.filter;
        this.filter = next;
        this.filterLoads++;
        this.filterFailing = false;
        // Lookups answered from the old filter since the resync may have said "absent" for
        // names whose change messages were lost: whoever cached that must read again.
        if (old !== null && next.hasAnyNotIn(old)) this.resyncListeners.emit();
        return true;
      } catch (err) {
        if (generation !== this.filterGeneration) continue;
        this.building = null;
        if (!this.filterFailing) {
          this.filterFailing = true;
          // run() already put where and what into the message, without the password
          const meanwhile = this.filter ? 'the previous filter serves meanwhile' : 'lookups read Redis meanwhile';
          const message = `${reason(err)} (loading the name filter, after ${Date.now() - started} ms; ${meanwhile}; retrying every ${FILTER_RETRY_MS} ms)`;
          this.report(new DivertError('BACKEND_UNAVAILABLE', message, { cause: err }));
        }
        clearTimeout(this.filterRetry);
        this.filterRetry = setTimeout(() => {
          if (!this.closed && this.loading === null) void this.loadFilter();
        }, FILTER_RETRY_MS).unref();
        return false;
      }
    }
  }

  /** Adds every name of the entries hash; false when a resync or close superseded the load. */
  private async scanInto(filter: NameFilter, generation: number): Promise<boolean> {
    let cursor = '0';
    do {
      // Redis before 7.4 has no NOVALUES: the values come along and are dropped.
      const [next, flat] = await this.run('HSCAN', () => this.client.hscan(this.entriesKey, cursor, 'COUNT', FILTER_PAGE));
      if (generation !== this.filterGeneration) return false;
      for (let i = 0; i < flat.length; i += 2) filter.add(flat[i]);
      cursor = next;
    } while (cursor !== '0');
    return true;
  }

  private now(): Date {
    return this.options.now ? this.options.now() : new Date();
  }

  /** Calls one write script with the keys and leading arguments every script takes. */
  private script<K extends keyof ScriptCommands>(name: K, args: string[], at = '', by = ''): ReturnType<ScriptCommands[K]> {
    const call = this.client[name] as (...a: (string | string[])[]) => ReturnType<ScriptCommands[K]>;
    // the arguments as one list, which ioredis flattens: spread, an import of 100k names
    // would pass 200k arguments and overflow the stack
    return call.call(this.client, this.entriesKey, this.seqKey, this.base, this.channel, at, by, args);
  }

  /** seed and import: name/data pairs in, name/version pairs back. */
  private async writeEntries(
    what: 'seed' | 'import',
    script: 'divertSeed' | 'divertImport',
    checked: Map<string, EntryData>,
    by: string,
  ): Promise<Entry[]> {
    const updatedAt = this.now().toISOString();
    const args = [...checked].flatMap(([name, data]) => [name, dataJson(data)]);
    const reply = await this.write(what, () => this.script(script, args, updatedAt, by));
    const written: Entry[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const name = String(reply[i]);
      const data = checked.get(name) as EntryData;
      written.push(freezeEntry({ name, ...data, version: Number(reply[i + 1]), updatedAt }));
    }
    this.settle(written.map((entry) => ({ name: entry.name, entry, version: entry.version })));
    return written;
  }

  /**
   * Runs one write script; the caller must call settle() once it succeeded. A write sent
   * to a connected Redis that then fails (Redis died before replying) may have been
   * applied: that is OUTCOME_UNKNOWN, not a refusal, so a client reads before retrying.
   */
  private async write<T>(what: string, call: () => Promise<T>): Promise<T> {
    this.inFlight++;
    const sent = this.isReady();
    try {
      return await this.run(what, call);
    } catch (err) {
      this.inFlight--;
      this.release(Infinity);
      if (sent && isDivertError(err, 'BACKEND_UNAVAILABLE')) {
        throw new DivertError('OUTCOME_UNKNOWN', `${err.message}; Redis went away with the write sent, so it may have been applied: read the entry (its version) before writing again`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * Ends one write: remembers its versions, emits held messages older than its changes,
   * then its own events (before the write's promise resolves), then, when no other write
   * is in flight, every held message that is not ours.
   */
  private settle(events: ChangeEvent[]): void {
    events.sort((x, y) => x.version - y.version);
    this.own.add(events.map((event) => event.version));
    this.release(events.length > 0 ? events[0].version : -Infinity);
    for (const event of events) this.emit(event);
    this.inFlight--;
    this.release(Infinity);
  }

  /** Emits held messages with versions below `below`, all of them only when no write is in flight. */
  private release(below: number): void {
    if (below === Infinity && this.inFlight > 0) return;
    while (this.heldAt < this.held.length && this.held[this.heldAt].version < below) this.deliver(this.held[this.heldAt++]);
    if (this.heldAt === this.held.length || (this.heldAt > 1024 && this.heldAt * 2 > this.held.length)) {
      this.held = this.held.slice(this.heldAt);
      this.heldAt = 0;
    }
  }

  private deliver(event: ChangeEvent): void {
    if (!this.own.take(event.version)) this.emit(event);
  }

  /** One message from the changes channel. */
  private received(raw: string): void {
    const event = this.parseMessage(raw);
    if (!event) {
      // a change we cannot read is a change listeners (and the name filter) miss
      this.resync();
      return;
    }
    if (this.inFlight > 0) this.held.push(event);
    else this.deliver(event);
  }

  private parseMessage(raw: string): ChangeEvent | null {
    try {
      const m = JSON.parse(raw) as { name?: unknown; entry?: unknown; version?: unknown };
      if (typeof m?.name !== 'string' || !Number.isSafeInteger(m.version)) throw new Error('name or version missing');
      const name = normalizeName(m.name);
      const version = m.version as number;
      if (m.entry === null) return { name, entry: null, version };
      const entry = this.parseValue(name, m.entry);
      if (entry.version !== version) throw new Error('entry and message versions differ');
      return { name, entry, version };
    } catch (err) {
      this.reportOnce(this.channel, raw, `a message on ${this.channel} is unreadable (${reason(err)}); listeners told to resync`);
      return null;
    }
  }

  private connectionError(which: 'main' | 'feed', err: Error): void {
    this.lastError = err;
    if (!this.connected || this.down[which]) return;
    this.down[which] = true;
    const what = which === 'feed' ? 'change feed: ' : '';
    this.report(new DivertError('BACKEND_UNAVAILABLE', `${this.where}: ${what}${this.scrub(err.message)}`, { cause: err }));
  }

  private unreachable(ms: number, what = ''): DivertError {
    const reason = this.lastError ? `: ${this.lastError.message}` : '';
    return new DivertError('BACKEND_UNAVAILABLE', this.scrub(`${this.where}: ${what}not reachable within ${ms} ms${reason}`));
  }

  private report(err: Error): void {
    try {
      this.options.onError?.(err);
    } catch {
      // a faulty error sink must not break the caller either
    }
  }

  /** Reports a bad stored value once per distinct value. */
  private reportOnce(where: string, raw: string, message: string): void {
    const id = `${where}\u0000${raw}`;
    if (this.reported.has(id)) return;
    if (this.reported.size >= 1024) this.reported.clear(); // bound memory, at worst report again
    this.reported.add(id);
    this.report(new Error(`${this.where}: ${message}`));
  }

  private scrub(message: string): string {
    return this.password ? message.split(this.password).join('***') : message;
  }

  /** Runs one Redis call; any failure becomes BACKEND_UNAVAILABLE without the password. */
  private async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new DivertError('BACKEND_UNAVAILABLE', `${this.where}: ${what} failed: ${this.scrub(message)}`, { cause: err });
    }
  }

  /** A stored value as an Entry, or null (reported once per distinct value) when unreadable. */
  private parse(name: string, raw: string, reportBad = true): Entry | null {
    try {
      return this.parseValue(name, JSON.parse(raw));
    } catch (err) {
      if (reportBad) {
        this.reportOnce(name, raw, `entry "${name}" in ${this.entriesKey} is unreadable (${reason(err)}); treated as absent`);
      }
      return null;
    }
  }

  private parseValue(name: string, value: unknown): Entry {
    const v = value as Record<string, unknown>;
    if (typeof v !== 'object' || v === null) throw new Error('not a JSON object');
    const data = parseState(v);
    if (!data) throw new Error('a, aaaa or ttl missing');
    if (!Number.isSafeInteger(v.version) || (v.version as number) < 1) throw new Error('bad version');
    if (typeof v.updatedAt !== 'string') throw new Error('bad updatedAt');
    return freezeEntry({ name, ...data, version: v.version as number, updatedAt: v.updatedAt });
  }
}

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** {a, aaaa, ttl, weights?, pick?, rules?} checked like any write, or null when missing. */
function parseState(v: Record<string, unknown>): EntryData | null {
  if (!Array.isArray(v.a) || !Array.isArray(v.aaaa) || typeof v.ttl !== 'number') return null;
  return checkEntryData({ a: v.a, aaaa: v.aaaa, ttl: v.ttl, weights: v.weights, pick: v.pick, rules: v.rules });
}

function parseHistory(raw: string): HistoryRecord | null {
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
