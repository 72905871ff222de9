// What a zone import costs as the file grows: parseZone in this process, and a real
// `POST /v1/import` to a `divert serve` (the in-process table and Redis), for files of one
// name with distinct addresses (refused once read: more than --max-addresses), of one
// name with the same few addresses repeated, of many names, and of many names half of them
// wildcards, doubling in size up to just under the 16 MiB the route accepts. A linear
// import keeps ms per MB flat down each column. A refusal is a result (its time is that of
// reading the file); a failure (5xx, such as a Redis script over the command timeout)
// skips the larger sizes of that column.
//
//   npm run bench:import        (BENCH_MAX_MB, default 16; BENCH_WORKERS, default 2;
//                                BENCH_STEP_LIMIT_MS, default 20000: once a size takes longer,
//                                the larger sizes of that case and column are skipped)
//
// Each size imports a name (or names) of its own, so no import replaces an earlier one.

import type { ChildProcess } from 'node:child_process';
import { spawnChild } from '../test/helpers/children.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseZone } from '../src/table/zone/parse.js';
import { Processes } from './processes.js';
import { freePort, startRedis } from './redis-server.js';

const MIB = 1024 * 1024;
/** The import route's body limit (admin-server.ts), less room for the last line. */
const LARGEST = 16 * MIB - 1024;
const maxMb = Number(process.env.BENCH_MAX_MB ?? 16);
const workers = process.env.BENCH_WORKERS ?? '2';
const stepLimitMs = Number(process.env.BENCH_STEP_LIMIT_MS ?? 20_000);
const TOKEN = 'bench-token-0123456789abcdef';
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

/** The i-th distinct IPv4 address (16M of them under 10/8). */
const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

interface Case {
  label: string;
  /** Record i of a file whose names live under `origin`. */
  record(i: number): string;
}

const CASES: Case[] = [
  { label: 'one name, distinct addresses', record: (i) => `www IN A ${address(i)}` },
  // stays a handful of addresses after merging, whatever the size: under any per-entry cap
  { label: 'one name, 4 addresses repeated', record: (i) => `www IN A ${address(i % 4)}` },
  { label: 'many names, one address each', record: (i) => `n${i} IN A ${address(i)}` },
  // every wildcard's change visits the cached names below it
  { label: 'many names, half of them wildcards', record: (i) => `${i % 2 === 1 ? '*.' : ''}n${i >> 1} IN A ${address(i)}` },
];

/** A zone file of about `bytes` (never more) made of the case's records. */
function zoneOf(c: Case, origin: string, bytes: number): { text: string; records: number } {
  const parts = [`$ORIGIN ${origin}\n$TTL 30\n`];
  let size = parts[0].length;
  let records = 0;
  for (;;) {
    const line = c.record(records) + '\n';
    if (size + line.length > bytes) break;
    parts.push(line);
    size += line.length;
    records++;
  }
  return { text: parts.join(''), records };
}

function sizes(): number[] {
  const out: number[] = [];
  for (let mb = 0.25; mb < maxMb; mb *= 2) out.push(Math.round(mb * MIB));
  out.push(Math.min(LARGEST, Math.round(maxMb * MIB)));
  return out;
}

interface Server {
  admin: string;
  child: ChildProcess;
}

async function startServe(processes: Processes, extra: string[]): Promise<Server> {
  const [dns, adminPort] = [await freePort(), await freePort()];
  const child = processes.track(
    spawnChild(
      process.execPath,
      [
        MAIN,
        'serve',
        '--listen',
        `127.0.0.1:${dns}`,
        '--admin',
        `127.0.0.1:${adminPort}`,
        '--admin-token',
        TOKEN,
        '--upstream',
        '127.0.0.1:9',
        '--workers',
        workers,
        '--log-level',
        'warn',
        ...extra,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    ),
  );
  const admin = `http://127.0.0.1:${adminPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`divert serve exited with ${child.exitCode}`);
    try {
      await fetch(`${admin}/healthz`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return { admin, child };
    } catch {
      if (Date.now() > deadline) throw new Error('divert serve did not answer on its admin port within 30 s');
      await sleep(200);
    }
  }
}

interface Timed {
  ms: number;
  /** A refusal (4xx) shown beside the time, as "400 BAD_ADDRESS". */
  refused?: string;
}

/** One POST /v1/import; throws when the server failed (5xx). */
async function importMs(server: Server, text: string): Promise<Timed> {
  const started = performance.now();
  const res = await fetch(`${server.admin}/v1/import?file=bench.zone`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/dns' },
    body: text,
  });
  const body = await res.text();
  const ms = performance.now() - started;
  if (res.status >= 500) throw new Error(`POST /v1/import: ${res.status} ${body.slice(0, 300)}`);
  return res.status === 200 ? { ms } : { ms, refused: `${res.status} ${/"code":"(\w+)"/.exec(body)?.[1] ?? ''}` };
}

function parseMs(text: string): Timed {
  const started = performance.now();
  parseZone(text, 'bench.zone');
  return { ms: performance.now() - started };
}

type Column = 'parse' | 'memory' | 'redis';
const COLUMNS: Column[] = ['parse', 'memory', 'redis'];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-bench-import-'));
  const processes = new Processes();
  try {
    const redis = await startRedis(dir, (child) => processes.track(child));
    const lines = [
      `Zone import, --workers ${workers}; ms, and ms per MB of zone file (flat down a column: linear)`,
      '',
      '| file | MB | records | parseZone ms | ms/MB | import, memory table ms | ms/MB | import, Redis ms | ms/MB |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ];
    for (const [k, c] of CASES.entries()) {
      // fresh servers for each case: the tables do not carry one case's names into the next
      const servers: Record<Exclude<Column, 'parse'>, Server> = {
        memory: await startServe(processes, []),
        redis: await startServe(processes, ['--redis', redis.url, '--redis-prefix', `bench-import-${k}:`]),
      };
      const slow = new Set<Column>();
      for (const bytes of sizes()) {
        const origin = `c${k}-${bytes}.bench.`;
        const { text, records } = zoneOf(c, origin, bytes);
        const mb = text.length / 1e6;
        const cells: string[] = [];
        for (const column of COLUMNS) {
          // an import parses too: a parse over the limit makes the imports of that size skip
          if (slow.has(column) || slow.has('parse')) {
            cells.push('skipped', '');
            continue;
          }
          let timed: Timed;
          try {
            timed = column === 'parse' ? parseMs(text) : await importMs(servers[column], text);
          } catch (err) {
            // a refused or failed import is a result too (a Redis command timeout, say)
            process.stderr.write(`${c.label}, ${mb.toFixed(2)} MB, ${column}: ${(err as Error).message}\n`);
            slow.add(column);
            cells.push(`failed: ${/"code":"(\w+)"/.exec((err as Error).message)?.[1] ?? 'see log'}`, '');
            continue;
          }
          const { ms, refused } = timed;
          if (ms > stepLimitMs) slow.add(column);
          cells.push(ms.toFixed(0) + (refused ? ` (${refused})` : ''), (ms / mb).toFixed(0));
          process.stderr.write(`${c.label}, ${mb.toFixed(2)} MB, ${column}: ${ms.toFixed(0)} ms${refused ? `, ${refused}` : ''}\n`);
        }
        lines.push(`| ${c.label} | ${mb.toFixed(2)} | ${records} | ${cells.join(' | ')} |`);
      }
      await Promise.all(Object.values(servers).map((server) => processes.stop(server.child, 30_000)));
    }
    console.log(lines.join('\n'));
  } finally {
    await processes.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
