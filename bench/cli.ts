// How long the operator's CLI takes from exec to exit, against a bare `node -e 0` on the
// same machine: `divert --help`, and `divert names list` / `names get` against a real
// `divert serve` on loopback ports the OS picks. Each command runs once to warm the disk
// cache, then RUNS times; the table shows the medians and their ratio to `node -e 0`.
// A benchmark prints figures; it asserts nothing.
//
//   npm run bench:cli            (BENCH_RUNS, default 10)

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, runDivert } from '../test/helpers/process.js';
import { Processes } from './processes.js';

const TOKEN = 'bench-token-0123456789abcdef';
const NAME = 'www.shop.example';
const RUNS = Number(process.env.BENCH_RUNS ?? 10);

interface Case {
  label: string;
  args: string[];
}

/** Milliseconds from spawn to exit of one run; a run that fails stops the bench, its stderr shown. */
function timeOnce(c: Case, env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const run = spawnSync(process.execPath, c.args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new Error(`${c.label} exited with ${run.status ?? run.signal}: ${run.stderr.trim()}`);
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main(processes: Processes, home: string): Promise<void> {
  const serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--admin-token', TOKEN, '--upstream', '127.0.0.1:9', '--workers', '1'], {
    env: { XDG_CONFIG_HOME: home },
  });
  processes.track(serve.child);
  const admin = `http://${(await serve.listeningLine(30_000)).admin}`;
  const connection = ['--admin', admin, '--token', TOKEN];
  // a handful of names, so that list and get print a table
  for (let i = 0; i < 5; i++) {
    const name = i === 0 ? NAME : `n${i}.shop.example`;
    const reply = await fetch(`${admin}/v1/names/${name}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ a: [`192.0.2.${10 + i}`], aaaa: [], ttl: 30 }),
    });
    if (!reply.ok) throw new Error(`PUT ${name}: HTTP ${reply.status} ${await reply.text()}`);
  }

  const cases: Case[] = [
    { label: 'node -e 0', args: ['-e', '0'] },
    { label: 'divert --help', args: [MAIN, '--help'] },
    { label: 'divert names list', args: [MAIN, 'names', 'list', ...connection] },
    { label: `divert names get ${NAME}`, args: [MAIN, 'names', 'get', NAME, ...connection] },
  ];
  // the CLI's own environment, so that no DIVERT_* variable of the shell changes what it does
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('DIVERT_')));
  env.XDG_CONFIG_HOME = home;

  const medians = new Map<string, number>();
  for (const c of cases) {
    timeOnce(c, env); // warm-up
    const times = Array.from({ length: RUNS }, () => timeOnce(c, env));
    medians.set(c.label, median(times));
    process.stderr.write(`${c.label}: ${times.map((t) => t.toFixed(0)).join(' ')} ms\n`);
  }
  const base = medians.get('node -e 0')!;
  const width = Math.max(...cases.map((c) => c.label.length));
  process.stdout.write(`\n${'command'.padEnd(width)}  median ms  × node -e 0\n`);
  for (const c of cases) {
    const ms = medians.get(c.label)!;
    process.stdout.write(`${c.label.padEnd(width)}  ${ms.toFixed(0).padStart(9)}  ${(ms / base).toFixed(2).padStart(11)}\n`);
  }
  process.stdout.write(`\n(median of ${RUNS} runs after one warm-up; node ${process.version}, ${process.execPath})\n`);
}

const processes = new Processes();
const home = mkdtempSync(join(tmpdir(), 'divert-bench-cli-'));
const finish = async (code: number) => {
  await processes.stopAll();
  rmSync(home, { recursive: true, force: true });
  process.exit(code);
};
// an interrupted bench still stops the server it started
process.once('SIGINT', () => void finish(130));
process.once('SIGTERM', () => void finish(143));
void main(processes, home)
  .then(
    () => 0,
    (err: unknown) => {
      process.stderr.write(`bench:cli: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    },
  )
  .then(finish);
