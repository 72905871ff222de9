// The shared peer benchmark (../shared/peerbench, read-only): checked for its Debian
// packages, copied into a writable folder (run.sh writes gen/ and results/ next to itself),
// run once per configuration, and read back from the copy's results/ files.

import { spawnSync } from 'node:child_process';
import { spawnChild } from '../test/helpers/children.js';
import { once } from 'node:events';
import { chmodSync, copyFileSync, cpSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Processes } from './processes.js';

/** Debian package → a command it installs; run.sh needs the first seven, the Redis runs redis-server, the DoT/DoH rows the last two. */
const REQUIRED: readonly (readonly [string, string])[] = [
  ['dnsperf', 'dnsperf'],
  ['nsd', 'nsd'],
  ['dnsdist', 'dnsdist'],
  ['unbound', 'unbound'],
  ['dnsmasq', 'dnsmasq'],
  ['dnsutils', 'dig'],
  ['time', '/usr/bin/time'],
  ['redis-server', 'redis-server'],
  ['openssl', 'openssl'],
  ['nghttp2-client', 'h2load'],
];

/** Packages whose command `command -v` does not find. */
/** The Debian packages (of [package, command] pairs) whose command is not on PATH. */
export function missingPackages(required: readonly (readonly [string, string])[] = REQUIRED): string[] {
  return required
    .filter(([, command]) => spawnSync('bash', ['-c', 'command -v "$1"', 'bash', command], { stdio: 'ignore' }).status !== 0)
    .map(([pkg]) => pkg);
}

/** Copies `source` (without gen/ and results/) to `dest` and makes the copy writable. */
export function copyPeerbench(source: string, dest: string): void {
  if (!existsSync(join(source, 'run.sh'))) throw new Error(`no run.sh in ${source}; set PEERBENCH_DIR to the peerbench folder`);
  cpSync(source, dest, {
    recursive: true,
    filter: (path) => !['gen', 'results'].includes(relative(source, path).split('/')[0]),
  });
  chmodSync(dest, 0o755);
  for (const entry of readdirSync(dest, { recursive: true, encoding: 'utf8' })) {
    const path = join(dest, entry);
    chmodSync(path, statSync(path).mode | 0o200);
  }
}

/** One row of run.sh's results/cells-*.csv: the median of REPS runs of one server, mix and transport. */
export interface Cell {
  label: string;
  mix: string;
  proto: string;
  setting: string;
  reps: number;
  qps: number;
  minQps: number;
  maxQps: number;
  maxLossPct: number;
  avgMs: number;
  sdMs: number;
  srvCpuPct: number;
  usPerQuery: number;
  /** CPU of everything else on the machine (other sessions), % of one core. */
  otherCpuPct: number;
  noerrorPct: number;
}

/** One row of run.sh's results/lat-*.tsv: one run at a fixed rate (LATQ, default 10,000 QPS). */
export interface Latency {
  label: string;
  mix: string;
  proto: string;
  qps: number;
  lossPct: number;
  avgMs: number;
  sdMs: number;
  usPerQuery: number;
  srvCpuPct: number;
}

export interface PeerRun {
  exitCode: number | null;
  cells: Cell[];
  latency: Latency[];
  /** run.sh's own markdown report of this run (results/table-<TS>.md, also copied to latest.md). */
  markdownPath: string | undefined;
}

export interface PeerRunOptions {
  copy: string;
  /** run.sh's RUNDIR: rendered configs, logs, pid files, raw dnsperf output. */
  runDir: string;
  /** Where SUT_CMD runs (run.sh's ORIG). */
  cwd: string;
  env: Record<string, string>;
}

/** Runs the copy's run.sh once; its progress log goes to our stderr, its markdown stays in results/. */
export async function runPeerbench(options: PeerRunOptions, processes: Processes): Promise<PeerRun> {
  const results = join(options.copy, 'results');
  const before = new Set(listResults(results));
  const child = processes.track(
    spawnChild('bash', [join(options.copy, 'run.sh')], {
      cwd: options.cwd,
      env: { ...process.env, RUNDIR: options.runDir, ...options.env },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  const [exitCode] = (await once(child, 'exit')) as [number | null];
  const fresh = listResults(results)
    .filter((name) => !before.has(name))
    .sort();
  const newest = (prefix: string) => fresh.filter((name) => name.startsWith(prefix)).pop();
  const cellsFile = newest('cells-');
  const latFile = newest('lat-');
  const mdFile = newest('table-');
  return {
    exitCode,
    cells: cellsFile ? parseCells(readFileSync(join(results, cellsFile), 'utf8')) : [],
    latency: latFile ? parseLatency(readFileSync(join(results, latFile), 'utf8')) : [],
    markdownPath: mdFile ? join(results, mdFile) : undefined,
  };
}

/** Keeps a copy of run.sh's markdown next to our own report. */
export function keepMarkdown(run: PeerRun, dest: string): string | undefined {
  if (!run.markdownPath) return undefined;
  copyFileSync(run.markdownPath, dest);
  return dest;
}

function listResults(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

// label|mix|proto|setting|n|qps|min|max|maxloss|avg|sd|srvcpu|us/q|up|perf|other|steal|cmd|noerror%
export function parseCells(text: string): Cell[] {
  return lines(text).map((line) => {
    const f = line.split('|');
    const n = (i: number) => Number(f[i]);
    return {
      label: f[0],
      mix: f[1],
      proto: f[2],
      setting: f[3],
      reps: n(4),
      qps: n(5),
      minQps: n(6),
      maxQps: n(7),
      maxLossPct: n(8),
      avgMs: n(9),
      sdMs: n(10),
      srvCpuPct: n(11),
      usPerQuery: n(12),
      otherCpuPct: n(15),
      noerrorPct: n(18),
    };
  });
}

// label \t mix \t proto \t qps|loss|avg|sd|us/q|srvcpu
export function parseLatency(text: string): Latency[] {
  return lines(text).map((line) => {
    const [label, mix, proto, rest = ''] = line.split('\t');
    const [qps, lossPct, avgMs, sdMs, usPerQuery, srvCpuPct] = rest.split('|').map(Number);
    return { label, mix, proto, qps, lossPct, avgMs, sdMs, usPerQuery, srvCpuPct };
  });
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim() !== '');
}
