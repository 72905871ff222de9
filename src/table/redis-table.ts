// AddressTable in Redis, shared by every divert process: a hash of JSON entries, written only by Lua scripts.

import { Redis } from 'ioredis';
import { maskUrl } from '../redact.js';
import { ChangeListeners } from './change-listeners.js';
import { DivertError } from '../errors.js';
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
import { checkIfVersion, compareNames, freezeEntry, versionMismatch } from './memory-table.js';

export interface RedisTableOptions {
  url: string;
  /** Prepended to every key, e.g. `divert:`. */
  prefix: string;
  /** Per command; a dead Redis must not stall the query path. Default 500. */
  commandTimeoutMs?: number;
  /** How long connect() keeps trying before giving up. Default 5000. */
  connectTimeoutMs?: number;
  now?: () => Date;
  /** Unreadable stored entries, listener exceptions and connection loss (once per outage). */
  onError?: (err: Error) => void;
}

// Every script touches only KEYS[1] (entries) and KEYS[2] (seq), which share a hash tag,
// so they stay atomic in Redis Cluster. Unreadable stored values count as version 0
// (absent), matching what readers see. Values are built as head .. version .. tail
// because cjson would encode an empty address list as {} rather than [].
const CURRENT_VERSION = `
local function current_version(raw)
  if not raw then return 0 end
  local ok, v = pcall(cjson.decode, raw)
  if ok and type(v) == 'table' and type(v.version) == 'number' then return v.version end
  return 0
end
`;

/** ARGV: name, ifVersion ('' = none), head, tail. Reply: {'OK', version} | {'MISMATCH', current}. */
const PUT_LUA = `${CURRENT_VERSION}
if ARGV[2] ~= '' then
  local current = current_version(redis.call('HGET', KEYS[1], ARGV[1]))
  if current ~= tonumber(ARGV[2]) then return {'MISMATCH', current} end
end
local version = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. version .. ARGV[4])
return {'OK', version}
`;

/** ARGV: name, ifVersion ('' = none). Reply: {'OK', version} | {'NOT_FOUND', 0} | {'MISMATCH', current}. */
const DELETE_LUA = `${CURRENT_VERSION}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'NOT_FOUND', 0} end
if ARGV[2] ~= '' then
  local current = current_version(raw)
  if current ~= tonumber(ARGV[2]) then return {'MISMATCH', current} end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return {'OK', redis.call('INCR', KEYS[2])}
`;

/** ARGV: tail, then name, head pairs. Reply: flat {name, version, ...} of the inserted. */
const SEED_LUA = `
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    local version = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. version .. ARGV[1])
    out[#out + 1] = ARGV[i]
    out[#out + 1] = version
  end
end
return out
`;

type ScriptReply = [string, number];
interface ScriptClient extends Redis {
  divertPut(entries: string, seq: string, name: string, ifVersion: string, head: string, tail: string): Promise<ScriptReply>;
  divertDelete(entries: string, seq: string, name: string, ifVersion: string): Promise<ScriptReply>;
  divertSeed(entries: string, seq: string, tail: string, ...namesAndHeads: string[]): Promise<(string | number)[]>;
}

/** The URL's password, so it can be scrubbed from errors that quote it. */
function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}

/** HSCAN MATCH pattern for names starting with `prefix`. */
export function globPrefix(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
}

const stored = (data: EntryData) =>
  `{"a":${JSON.stringify(data.a)},"aaaa":${JSON.stringify(data.aaaa)},"ttl":${data.ttl},"version":`;
const tailOf = (updatedAt: string) => `,"updatedAt":${JSON.stringify(updatedAt)}}`;

export class RedisTable implements AddressTable {
  private readonly listeners: ChangeListeners;
  private readonly reported = new Set<string>();
  private readonly entriesKey: string;
  private readonly seqKey: string;
  private readonly where: string;

  private constructor(
    private readonly client: ScriptClient,
    private readonly options: RedisTableOptions,
    private readonly password: string,
  ) {
    this.entriesKey = `${options.prefix}{table}:entries`;
    this.seqKey = `${options.prefix}{table}:seq`;
    this.where = `redis at ${maskUrl(options.url)}`;
    this.listeners = new ChangeListeners((err) => this.report(err));
  }

  static async connect(options: RedisTableOptions): Promise<RedisTable> {
    const where = `redis at ${maskUrl(options.url)}`;
    const password = passwordOf(options.url);
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    const client = new Redis(options.url, {
      lazyConnect: true,
      connectTimeout: connectTimeoutMs,
      commandTimeout: options.commandTimeoutMs ?? 500,
      // Fail fast while Redis is away instead of queueing: the query path forwards or
      // answers from cache rather than waiting. Reconnect on its own, capped at 2 s.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      // A write whose caller already saw a timeout must not be replayed after reconnect.
      autoResendUnfulfilledCommands: false,
      scripts: {
        divertPut: { lua: PUT_LUA, numberOfKeys: 2 },
        divertDelete: { lua: DELETE_LUA, numberOfKeys: 2 },
        divertSeed: { lua: SEED_LUA, numberOfKeys: 2 },
      },
    }) as ScriptClient;

    let lastError: Error | undefined;
    let table: RedisTable | undefined;
    let down = false;
    // Without a listener an 'error' event would crash the process.
    client.on('error', (err: Error) => {
      lastError = err;
      if (!table || down) return;
      down = true;
      table.report(new DivertError('BACKEND_UNAVAILABLE', `${where}: ${table.scrub(err.message)}`, { cause: err }));
    });
    client.on('ready', () => {
      down = false;
    });

    const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
    client.connect().catch(() => {}); // failures are retried by retryStrategy until the deadline
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), connectTimeoutMs);
    });
    const failed = await Promise.race([ready.then(() => false), timedOut]);
    clearTimeout(timer);
    if (failed) {
      client.disconnect();
      const reason = lastError ? `: ${lastError.message}` : '';
      const message = `${where}: not reachable within ${connectTimeoutMs} ms${reason}`;
      throw new DivertError('BACKEND_UNAVAILABLE', password ? message.split(password).join('***') : message);
    }
    table = new RedisTable(client, options, password);
    return table;
  }

  /** True while commands can be sent. Checks the socket too: after the peer hangs up,
   *  ioredis still says 'ready' until it processes the close. */
  isReady(): boolean {
    const stream = this.client.stream as { writable?: boolean } | undefined;
    return this.client.status === 'ready' && stream?.writable === true;
  }

  async get(name: string): Promise<Entry | null> {
    const key = normalizeName(name);
    const raw = await this.run('HGET', () => this.client.hget(this.entriesKey, key));
    return raw === null ? null : this.parse(key, raw);
  }

  /** One HMGET for all candidates; the first readable one answers. */
  async lookup(candidates: readonly string[]): Promise<Entry | null> {
    if (candidates.length === 0) return null;
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
    const [status, version] = await this.run('put', () =>
      this.client.divertPut(this.entriesKey, this.seqKey, key, ifVersion, stored(checked), tailOf(updatedAt)),
    );
    if (status === 'MISMATCH') throw versionMismatch('put', key, options.ifVersion as number, version);
    const entry = freezeEntry({ name: key, ...checked, version, updatedAt });
    this.emit({ name: key, entry, version });
    return entry;
  }

  async delete(name: string, options: WriteOptions = {}): Promise<void> {
    const key = normalizeName(name);
    checkIfVersion(key, options.ifVersion);
    const ifVersion = options.ifVersion === undefined ? '' : String(options.ifVersion);
    const [status, version] = await this.run('delete', () =>
      this.client.divertDelete(this.entriesKey, this.seqKey, key, ifVersion),
    );
    if (status === 'NOT_FOUND') throw new DivertError('NOT_FOUND', `delete "${key}": no such entry`);
    if (status === 'MISMATCH') throw versionMismatch('delete', key, options.ifVersion as number, version);
    this.emit({ name: key, entry: null, version });
  }

  // One script for the whole seed keeps it atomic; a very large seed blocks Redis for
  // its duration (roughly a few ms per thousand names).
  async seed(entries: ReadonlyMap<string, EntryData>): Promise<Entry[]> {
    const checked = new Map<string, EntryData>();
    for (const [name, data] of entries) {
      const key = normalizeName(name);
      if (!checked.has(key)) checked.set(key, checkEntryData(data)); // first spelling wins, as in MemoryTable
    }
    if (checked.size === 0) return [];
    const updatedAt = this.now().toISOString();
    const args = [...checked].flatMap(([name, data]) => [name, stored(data)]);
    const reply = await this.run('seed', () =>
      this.client.divertSeed(this.entriesKey, this.seqKey, tailOf(updatedAt), ...args),
    );
    const inserted: Entry[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const name = String(reply[i]);
      const data = checked.get(name) as EntryData;
      inserted.push(freezeEntry({ name, ...data, version: Number(reply[i + 1]), updatedAt }));
    }
    for (const entry of inserted) this.emit({ name: entry.name, entry, version: entry.version });
    return inserted;
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  /** HLEN: counts unreadable entries too. */
  async size(): Promise<number> {
    return this.run('HLEN', () => this.client.hlen(this.entriesKey));
  }

  async close(): Promise<void> {
    this.listeners.clear();
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

  /**
   * Delivers one change to this instance's listeners. Writes made here call it now; the
   * pub/sub subscriber for changes made by other processes will call it too.
   */
  protected emit(event: ChangeEvent): void {
    this.listeners.emit(event);
  }

  private now(): Date {
    return this.options.now ? this.options.now() : new Date();
  }

  private report(err: Error): void {
    try {
      this.options.onError?.(err);
    } catch {
      // a faulty error sink must not break the caller either
    }
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
      const v = JSON.parse(raw) as Record<string, unknown>;
      if (typeof v !== 'object' || v === null) throw new Error('not a JSON object');
      if (!Array.isArray(v.a) || !Array.isArray(v.aaaa) || typeof v.ttl !== 'number') {
        throw new Error('a, aaaa or ttl missing');
      }
      const data = checkEntryData({ a: v.a, aaaa: v.aaaa, ttl: v.ttl });
      if (!Number.isSafeInteger(v.version) || (v.version as number) < 1) throw new Error('bad version');
      if (typeof v.updatedAt !== 'string') throw new Error('bad updatedAt');
      return freezeEntry({ name, ...data, version: v.version as number, updatedAt: v.updatedAt });
    } catch (err) {
      const id = `${name}\u0000${raw}`;
      if (reportBad && !this.reported.has(id)) {
        if (this.reported.size >= 1024) this.reported.clear(); // bound memory, at worst report again
        this.reported.add(id);
        const reason = err instanceof Error ? err.message : String(err);
        this.report(new Error(`${this.where}: entry "${name}" in ${this.entriesKey} is unreadable (${reason}); treated as absent`));
      }
      return null;
    }
  }
}
