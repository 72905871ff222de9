// A million names in the Redis table: loadNames() fills a prefix the way RedisTable writes
// (used by run.ts); run directly, it also measures a fresh RedisTable's name filter: load
// time, RSS before and after, and lookups per second of names the table does not hold.
//
//   REDIS_PORT=7000 node dist/bench/million-names.js     (a throw-away redis-server)
//   BENCH_NAMES (default 1000000), REDIS_URL instead of REDIS_PORT, BENCH_KEEP=1 keeps the keys.

import { execChildSync, spawnChild } from '../test/helpers/children.js';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { inspect } from '../src/debug.js';
import { AnswerCache } from '../src/table/answer-cache.js';
import { redisTable } from '../test/helpers/tables.js';
import { dropPrefix } from '../test/helpers/redis.js';

const BATCH = 10_000;
const TTL = 300;
const BY = 'bench';

export const millionName = (i: number) => `n${i}.million.test`;
const address = (i: number) => `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;

/**
 * Writes `n0.million.test` … `n<count-1>.million.test` (A 10.x.y.z, TTL 300) under `prefix`,
 * as RedisTable.importEntries would: entry, version from the table's sequence, reverse
 * index and one history record each (IMPORT_LUA in src/table/redis-scripts.ts). Not
 * through that script, which costs ~50 µs of Redis per name (a million in ~90 s), nor
 * ioredis pipelines (their per-command objects keep the collector busy): the commands go
 * to `redis-cli --pipe`, Redis's mass-insertion mode. Differences from the script: no
 * change messages (load before servers use the prefix, or they miss these names until a
 * resync); and a batch holding a name that already exists goes through importEntries
 * itself, so an old entry is replaced exactly as divert would.
 */
export async function loadNames(url: string, prefix: string, count: number): Promise<void> {
  // Connecting builds the reverse-index marker, so no later connect re-indexes a million names.
  const table = await redisTable({ url, prefix, commandTimeoutMs: 60_000, nameFilter: false });
  const client = new Redis(url);
  const pipe = massInsert(url);
  const base = `${prefix}{table}:`;
  try {
    for (let start = 0; start < count; start += BATCH) {
      const names: string[] = [];
      for (let i = start; i < Math.min(count, start + BATCH); i++) names.push(millionName(i));
      const existing = await client.hmget(`${base}entries`, ...names);
      if (existing.some((raw) => raw !== null)) {
        const entries = new Map(names.map((name, k) => [name, { a: [address(start + k)], aaaa: [], ttl: TTL }]));
        await table.importEntries(entries, { by: BY });
        continue;
      }
      const last = await client.incrby(`${base}seq`, names.length);
      await pipe.write(batchCommands(base, names, start, last - names.length + 1));
    }
    await pipe.end();
  } finally {
    pipe.kill();
    client.disconnect();
    await table.close();
  }
}

/** The commands IMPORT_LUA runs for names not yet present, as RESP. */
function batchCommands(base: string, names: string[], first: number, firstVersion: number): Buffer {
  const at = JSON.stringify(new Date().toISOString());
  const out = new RespWriter();
  out
    .array(2 + names.length * 2)
    .bulk('HSET')
    .bulk(`${base}entries`);
  names.forEach((name, k) => {
    const a = `[${JSON.stringify(address(first + k))}]`;
    // keys in the order the script's encode writes them (sorted)
    out.bulk(name).bulk(`{"a":${a},"aaaa":[],"ttl":${TTL},"updatedAt":${at},"updatedBy":"${BY}","version":${firstVersion + k}}`);
  });
  names.forEach((name, k) => {
    const version = firstVersion + k;
    const a = `[${JSON.stringify(address(first + k))}]`;
    out
      .array(3)
      .bulk('SADD')
      .bulk(`${base}addr:${address(first + k)}`)
      .bulk(name);
    // A new list of one record: the script's LTRIM to HISTORY_LENGTH would change nothing.
    const record = `{"version":${version},"at":${at},"op":"import","by":"${BY}","old":null,"new":{"a":${a},"aaaa":[],"ttl":${TTL}}}`;
    out.array(3).bulk('LPUSH').bulk(`${base}history:${name}`).bulk(record);
  });
  return out.done();
}

/** RESP written straight into one growing buffer: no large intermediate strings. */
class RespWriter {
  private buf = Buffer.allocUnsafe(1 << 20);
  private at = 0;

  array(length: number): this {
    return this.text(`*${length}\r\n`);
  }

  bulk(arg: string): this {
    return this.text(`$${Buffer.byteLength(arg)}\r\n`)
      .text(arg)
      .text('\r\n');
  }

  done(): Buffer {
    return this.buf.subarray(0, this.at);
  }

  private text(s: string): this {
    if (this.at + s.length * 3 > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + s.length * 3));
      this.buf.copy(bigger, 0, 0, this.at);
      this.buf = bigger;
    }
    this.at += this.buf.write(s, this.at);
    return this;
  }
}

/** `redis-cli --pipe`: write RESP, end() resolves once every reply came back without error. */
function massInsert(url: string): { write(data: Buffer): Promise<void>; end(): Promise<void>; kill(): void } {
  const child = spawnChild('redis-cli', ['-u', url, '--pipe'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdin!.on('error', () => {}); // a redis-cli that died is reported through its exit
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`redis-cli: ${err.message} (it comes with redis-server)`)));
    child.once('exit', (code) => resolve(code));
  });
  exited.catch(() => {}); // reported by write() or end()
  return {
    write: (data) =>
      new Promise((resolve, reject) => {
        if (child.stdin!.write(data)) resolve();
        else child.stdin!.once('drain', resolve);
        exited.then(() => reject(new Error(`redis-cli --pipe ended early: ${output.trim()}`)), reject);
      }),
    end: async () => {
      child.stdin!.end();
      const code = await exited;
      const m = /errors: (\d+), replies: (\d+)/.exec(output);
      if (code !== 0 || !m || m[1] !== '0') throw new Error(`redis-cli --pipe failed (exit ${code}): ${output.trim()}`);
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
    },
  };
}

interface Measured {
  names: number;
  filterLoadMs: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  /** After a full garbage collection: what the filter keeps, without the load's garbage. */
  rssAfterGcMb: number;
  heapAfterGcMb: number;
  absentLookupsPerSecond: number;
  cacheResolvesPerSecond: number;
  rssAfterCacheMb: number;
  heapAfterCacheGcMb: number;
  redisLookupsPerSecond: number;
  hmgetDuringAbsent: number;
}

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
/** A full collection when run with --expose-gc (the measuring child is). */
const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** In a fresh process, so its RSS is the table's and not the loader's. */
async function measure(url: string, prefix: string): Promise<Measured> {
  const table = await redisTable({ url, prefix, commandTimeoutMs: 5000 });
  const inspector = new Redis(url);
  const hmgets = async () => Number(/^cmdstat_hmget:calls=(\d+)/m.exec(await inspector.info('commandstats'))?.[1] ?? 0);
  try {
    const rssBefore = process.memoryUsage().rss;
    let t0 = performance.now();
    if (!(await table.redis.loadFilter())) throw new Error('the name filter did not load');
    const filterLoadMs = performance.now() - t0;
    const rssAfter = process.memoryUsage().rss;
    gc();
    const afterGc = process.memoryUsage();

    const present = await table.lookupName(millionName(12_345));
    if (present?.a[0] !== address(12_345)) throw new Error(`${millionName(12_345)} not found`);

    const before = await hmgets();
    const N = 1_000_000;
    t0 = performance.now();
    for (let i = 0; i < N; i++) {
      if (table.lookupName(`q${i}.forwarded.example.com`) !== null) throw new Error('absent name found');
    }
    const absentLookupsPerSecond = N / ((performance.now() - t0) / 1000);
    const hmgetDuringAbsent = (await hmgets()) - before;

    // Through the answer cache, as the query path asks (100k names, its default size).
    const cache = new AnswerCache(table, { maxNames: 100_000 });
    t0 = performance.now();
    for (let i = 0; i < N; i++) void cache.resolve(`c${i}.forwarded.example.com`);
    const cacheResolvesPerSecond = N / ((performance.now() - t0) / 1000);
    const rssAfterCache = process.memoryUsage().rss;
    gc();
    const heapAfterCacheGc = process.memoryUsage().heapUsed;
    cache.close();

    // For comparison: the same lookups reading Redis (64 in flight), as without the filter.
    const plain = await redisTable({ url, prefix, commandTimeoutMs: 5000, nameFilter: false });
    const M = 50_000;
    t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < M) await plain.lookupName(`r${next++}.forwarded.example.com`);
      }),
    );
    const redisLookupsPerSecond = M / ((performance.now() - t0) / 1000);
    await plain.close();

    return {
      names: inspect(table.redis).size,
      filterLoadMs: Math.round(filterLoadMs),
      rssBeforeMb: mb(rssBefore),
      rssAfterMb: mb(rssAfter),
      rssAfterGcMb: mb(afterGc.rss),
      heapAfterGcMb: mb(afterGc.heapUsed),
      absentLookupsPerSecond: Math.round(absentLookupsPerSecond),
      cacheResolvesPerSecond: Math.round(cacheResolvesPerSecond),
      rssAfterCacheMb: mb(rssAfterCache),
      heapAfterCacheGcMb: mb(heapAfterCacheGc),
      redisLookupsPerSecond: Math.round(redisLookupsPerSecond),
      hmgetDuringAbsent,
    };
  } finally {
    inspector.disconnect();
    await table.close();
  }
}

async function main(): Promise<void> {
  const port = process.env.REDIS_PORT;
  const url = process.env.REDIS_URL ?? (port ? `redis://127.0.0.1:${port}` : undefined);
  if (!url) throw new Error('set REDIS_PORT (or REDIS_URL) to a throw-away redis-server: this writes a million names');
  if ((new URL(url).port || '6379') === '6379')
    throw new Error(`${url} is on the default port: use a throw-away redis-server on another one`);
  if (process.argv[2] === '--measure') {
    process.stdout.write(JSON.stringify(await measure(url, process.argv[3])) + '\n');
    return;
  }
  const count = Number(process.env.BENCH_NAMES ?? 1_000_000);
  const prefix = `bench-million:${randomBytes(3).toString('hex')}:`;
  const t0 = performance.now();
  await loadNames(url, prefix, count);
  const loadS = (performance.now() - t0) / 1000;
  console.log(
    `loaded ${count.toLocaleString('en')} names under ${prefix} in ${loadS.toFixed(1)} s (${Math.round(count / loadS).toLocaleString('en')}/s)`,
  );
  try {
    const out = execChildSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--measure', prefix], {
      env: { ...process.env, REDIS_URL: url },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const m = JSON.parse(out) as Measured;
    const n = (x: number) => x.toLocaleString('en');
    console.log(`fresh RedisTable: name filter of ${n(m.names)} names loaded in ${n(m.filterLoadMs)} ms`);
    console.log(
      `  RSS ${m.rssBeforeMb} MB before, ${m.rssAfterMb} MB after; after a GC ${m.rssAfterGcMb} MB (heap used ${m.heapAfterGcMb} MB)`,
    );
    console.log(`  absent names: ${n(m.absentLookupsPerSecond)} lookups/s, ${m.hmgetDuringAbsent} HMGET for 1,000,000 of them`);
    console.log(
      `  through the answer cache (100k names): ${n(m.cacheResolvesPerSecond)} resolves/s, RSS then ${m.rssAfterCacheMb} MB (heap used after a GC ${m.heapAfterCacheGcMb} MB)`,
    );
    console.log(`  for comparison, reading Redis (no filter, 64 in flight): ${n(m.redisLookupsPerSecond)} lookups/s`);
  } finally {
    if (process.env.BENCH_KEEP !== '1') await dropPrefix(url, prefix);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`million-names: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
