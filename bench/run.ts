// npm run bench: divert in the shared peer benchmark (../shared/peerbench/run.sh, see its
// README), next to dnsdist and the Node ceilings in the same run, then with its table in
// Redis at 1,000 and at 1,000,000 names, then time-to-divert. Prints one markdown report
// (also written to the temp folder, whose path goes to stderr). run.sh's folder is
// read-only and writes next to itself, so a private copy of it is run, once per setting:
//   1. ONLY="sut dnsdist node": divert (memory table, zone file) against dnsdist (Lua table,
//      packet cache off) and the Node ceilings: mixes a, b, c, u, TCP b; then, with NSD
//      started again from run.sh's rendered config, latency at 10k QPS with dnsperf -v
//      (average and p99): divert on (a) and (c), dnsdist on (c) (bench/latency-runs.ts);
//      then DoT and DoH (dnsperf -m dot / h2load) on (a) and (c), divert against dnsdist
//      with addTLSLocal/addDOHLocal, BENCH_REPS × BENCH_ROUNDS runs each in turn, the
//      median kept (bench/encrypted-runs.ts);
//   2. ONLY=sut, table in a private redis-server, 1,000 names seeded from the zone file;
//   3. the same with 999,000 more names loaded first (bench/million-names.ts).
// The RSS of divert's processes is sampled about once a second while run.sh has it up.
// Every process started here is stopped by its PID, also on error and on SIGINT/SIGTERM;
// every load run is bounded by dnsperf -l (run.sh).
//
// Environment:
//   BENCH_SECONDS   seconds per dnsperf run (run.sh DUR), default 10
//   BENCH_REPS      runs per cell, median shown (run.sh REPS), default 3
//   BENCH_ROUNDS    run 1's run.sh this many times (dnsdist, then divert, each time; the
//                   Node ceilings in the first only); each cell is its round with the
//                   median QPS (bench/rounds.ts), and the fixed-rate latency runs
//                   BENCH_REPS × BENCH_ROUNDS times per server, as do the DoT and DoH
//                   runs; default 1
//   BENCH_WORKERS   divert serve --workers N, default os.availableParallelism();
//                   "omit" leaves the flag out (divert's own default)
//   BENCH_PEERS     0: run 1 measures divert only (no dnsdist, no Node ceilings)
//   BENCH_MILLION   0: skip runs 2 and 3 (Redis 1k / 1M names)
//   BENCH_ENCRYPTED 0: skip the DoT and DoH rows (bench/encrypted-runs.ts)
//   BENCH_CHANGES   changes measured by time-to-divert, default 1000
//   PEERBENCH_DIR   the peerbench folder, default ../shared/peerbench from the repository
// run.sh's own variables (LATQ, LATDUR, NODE_DEPS) pass through unchanged.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { positive } from './env-knobs.js';
import { encryptedRuns, renderEncrypted, type EncryptedCell } from './encrypted-runs.js';
import { latencyRuns, type Server } from './latency-runs.js';
import { copyPeerbench, keepMarkdown, missingPackages, runPeerbench, type PeerRun } from './peerbench.js';
import { Processes, runBench } from './processes.js';
import { startRedis } from './redis-server.js';
import { DNSDIST, renderReport, SUT } from './report.js';
import { mergeRounds, mergeRss } from './rounds.js';
import { RssSampler, type RssSummary } from './rss-sampler.js';
import { timeToDivert } from './time-to-divert.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..'); // dist/bench/ or any other outDir/bench/
const main = join(here, '..', 'src', 'main.js');
const TOKEN = 'peerbench-token-0123456789';
const MILLION_EXTRA = 999_000;

const settings = {
  seconds: positive('BENCH_SECONDS', 10),
  reps: positive('BENCH_REPS', 3),
  rounds: positive('BENCH_ROUNDS', 1),
  workers: process.env.BENCH_WORKERS === 'omit' ? ('omit' as const) : positive('BENCH_WORKERS', availableParallelism()),
  peers: process.env.BENCH_PEERS !== '0',
  million: process.env.BENCH_MILLION !== '0',
  encrypted: process.env.BENCH_ENCRYPTED !== '0',
  changes: positive('BENCH_CHANGES', 1000),
  peerbenchDir: resolve(process.env.PEERBENCH_DIR ?? join(repoRoot, '..', 'shared', 'peerbench')),
  latencyQps: positive('LATQ', 10_000),
};
// run.sh finishes its current dnsperf run (≤ DUR s, LATDUR 5 s) before its trap stops its servers
const stopGraceMs = (Math.max(settings.seconds, 5) + 30) * 1000;
const processes = new Processes();

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

const workersArgs = settings.workers === 'omit' ? [] : ['--workers', String(settings.workers)];

/** divert serve's arguments, as run.sh's SUT_CMD and for the fixed-rate latency runs after run.sh. */
function serveArgs(listen: string, upstream: string, zone: string, extra: string[]): string[] {
  const admin = ['--admin', '127.0.0.1:0', '--admin-token', TOKEN];
  return ['serve', '--listen', listen, ...admin, '--upstream', upstream, '--zones', zone, '--log-level', 'warn', ...workersArgs, ...extra];
}

/** run.sh runs this with bash -c in the repository, with PORT, UPSTREAM and ZONE in its environment. */
function sutCmd(extra: string[]): string {
  return [quote(process.execPath), quote(main), ...serveArgs('127.0.0.1:$PORT', '$UPSTREAM', '"$ZONE"', extra)].join(' ');
}

interface Measured {
  run: PeerRun;
  rss: RssSummary;
  markdown: string | undefined;
  /** run.sh's RUNDIR: rendered configs, logs, raw dnsperf output. */
  runDir: string;
}

async function measure(work: string, copy: string, name: string, label: string, only: string, extra: string[]): Promise<Measured> {
  const runDir = join(work, name);
  mkdirSync(runDir);
  const env = { DUR: String(settings.seconds), REPS: String(settings.reps), ONLY: only, SUT_LABEL: label, SUT_CMD: sutCmd(extra) };
  log(`${name}: run.sh with ONLY="${only}" SUT_LABEL="${label}" SUT_CMD=${env.SUT_CMD}`);
  const sampler = new RssSampler(join(runDir, 'sut.pid'));
  sampler.start();
  let run: PeerRun;
  let rss: RssSummary;
  try {
    run = await runPeerbench({ copy, runDir, cwd: repoRoot, env }, processes);
  } finally {
    rss = sampler.stop();
  }
  rmSync(join(runDir, 'uniq.txt'), { force: true }); // 800,000 names, regenerated per run
  if (run.exitCode !== 0) throw new Error(`run.sh (${name}) exited with ${run.exitCode}; logs in ${runDir}`);
  if (!run.cells.some((cell) => cell.label === label)) {
    log(`${name}: no figures for "${label}"; its log: ${join(runDir, 'sut.log')}`);
    process.exitCode = 1;
  }
  const markdown = keepMarkdown(run, join(work, `${name}.md`));
  log(`${name}: run.sh report ${markdown ?? '(none)'}; raw output in ${runDir}`);
  return { run, rss, markdown, runDir };
}

/** divert serve on `port` with run.sh's upstream and zone file, for the fixed-rate latency runs after run.sh. */
function divertServer(copy: string, port: number): Server {
  const args = serveArgs(`127.0.0.1:${port}`, '127.0.0.1:15301', join(copy, 'gen', 'shop.test.zone'), []);
  return { label: SUT.memory, port, command: process.execPath, args: [main, ...args] };
}

async function bench(): Promise<void> {
  const missing = missingPackages();
  if (missing.length > 0) {
    log(`missing ${missing.join(', ')}; install with:\n  apt-get install -y ${missing.join(' ')}`);
    process.exit(2);
  }
  const work = mkdtempSync(join(tmpdir(), 'divert-peerbench-'));
  const copy = join(work, 'peerbench');
  copyPeerbench(settings.peerbenchDir, copy);
  log(`peerbench copied from ${settings.peerbenchDir} to ${copy}; divert ${main}, --workers ${settings.workers}`);

  const rounds: Measured[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const only = !settings.peers ? 'sut' : round === 1 ? 'sut dnsdist node' : 'sut dnsdist';
    rounds.push(await measure(work, copy, settings.rounds === 1 ? 'run-1-memory' : `run-1-memory-round-${round}`, SUT.memory, only, []));
  }
  const memory: Measured = {
    run: mergeRounds(rounds.map((r) => r.run)),
    rss: mergeRss(rounds.map((r) => r.rss)),
    markdown: rounds[0].markdown,
    runDir: rounds[0].runDir,
  };
  const fixedRate = await latencyRuns(
    {
      copy,
      runDir: memory.runDir,
      qps: settings.latencyQps,
      reps: settings.reps * settings.rounds, // with rounds, as many fixed-rate runs per server as saturating runs per cell
      divert: divertServer(copy, 15351), // run.sh's range; nothing of run.sh runs any more
      dnsdistLabel: DNSDIST,
      log,
    },
    processes,
  );
  let encrypted: EncryptedCell[] = [];
  if (settings.encrypted)
    encrypted = await encryptedRuns(
      {
        copy,
        runDir: memory.runDir,
        seconds: settings.seconds,
        reps: settings.reps * settings.rounds, // as the fixed-rate latency runs
        divert: (listen, extra) => ({
          command: process.execPath,
          args: [main, ...serveArgs(listen, '127.0.0.1:15301', join(copy, 'gen', 'shop.test.zone'), extra)],
        }),
        divertLabel: SUT.memory,
        dnsdistLabel: DNSDIST,
        log,
      },
      processes,
    );
  let redis1k: Measured | undefined;
  let redis1m: Measured | undefined;
  if (settings.million) {
    const redisDir = join(work, 'redis');
    mkdirSync(redisDir);
    const redis = await startRedis(redisDir, (child) => processes.track(child));
    log(`redis-server ${redis.url} (pid ${redis.child.pid})`);
    redis1k = await measure(work, copy, 'run-2-redis-1k', SUT.redis1k, 'sut', ['--redis', redis.url, '--redis-prefix', 'bench1k:']);
    const { loadNames } = await import('./million-names.js');
    const t0 = performance.now();
    await loadNames(redis.url, 'bench1m:', MILLION_EXTRA);
    log(`loaded ${MILLION_EXTRA.toLocaleString('en')} names under bench1m: in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    redis1m = await measure(work, copy, 'run-3-redis-1m', SUT.redis1m, 'sut', ['--redis', redis.url, '--redis-prefix', 'bench1m:']);
    await processes.stop(redis.child);
  }

  const workers = settings.workers === 'omit' ? Math.max(1, memory.rss.workers) : settings.workers;
  const runs = [
    ['1: memory table', memory],
    ['2: Redis, 1k names', redis1k],
    ['3: Redis, 1M names', redis1m],
  ] as const;
  const report = [
    `## divert bench ${new Date().toISOString()}: ${availableParallelism()} cores, node ${process.version}, ` +
      `BENCH_SECONDS=${settings.seconds}, BENCH_REPS=${settings.reps}, --workers ${settings.workers}`,
    '',
    ...(settings.rounds > 1
      ? [
          `BENCH_ROUNDS=${settings.rounds}: run.sh ran ${settings.rounds} times, dnsdist then divert each time (the Node ceilings in the first); ` +
            "each cell below is its round with the median QPS, and its loss, latency and CPU are that round's.",
          '',
        ]
      : []),
    ...renderReport({
      workers,
      memory: memory.run,
      redis1k: redis1k?.run,
      redis1m: redis1m?.run,
      rss: runs.flatMap(([run, m]) => (m ? [{ run, summary: m.rss }] : [])),
      latencyQps: settings.latencyQps,
      fixedRate,
    }),
    '',
    ...(settings.encrypted ? [...renderEncrypted(encrypted, SUT.memory, DNSDIST, settings.seconds), ''] : []),
    'run.sh reports (every server, CPU columns, client settings):',
    '',
    // run 1 as its rounds (one when BENCH_ROUNDS is 1), then the Redis runs
    ...rounds.map((m, i) => `- 1: memory table${settings.rounds > 1 ? `, round ${i + 1}` : ''}: ${m.markdown ?? '(none)'}`),
    ...runs.slice(1).flatMap(([run, m]) => (m ? [`- ${run}: ${m.markdown ?? '(none)'}`] : [])),
    '',
  ];
  log(`time to divert: ${settings.changes} changes`);
  const timing = await timeToDivert(settings.changes, processes.list, workersArgs).catch((err: Error) => [
    `Time to divert: not measured: ${err.message}`,
  ]);
  const text = [...report, ...timing, ''].join('\n');
  const path = join(work, 'bench.md');
  writeFileSync(path, text);
  process.stdout.write(text);
  log(`report written to ${path}`);
}

await runBench(processes, bench, stopGraceMs);
