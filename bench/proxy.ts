// npm run bench:proxy: divert proxy against HAProxy (Debian's haproxy, `mode tcp`) on
// this machine, in one run, every process on 127.0.0.1 (see bench/proxy-peers.ts):
//   - bulk throughput, iperf3 through each proxy to one iperf3 server: one stream, then
//     BENCH_PROXY_STREAMS parallel streams (Gbit/s the receiver got);
//   - new connections per second: wrk (1 thread, BENCH_PROXY_CONNECTIONS connections,
//     `Connection: close`, so every request is a new connection through the proxy and a
//     new one from the proxy) to an HAProxy HTTP backend that answers 200 itself;
//   - connect latency p50 / p99 at BENCH_PROXY_RATE new connections a second (a Node
//     client: connect() until the first reply byte);
//   - RSS of each proxy (largest seen, sampled every 200 ms), and each proxy's CPU.
// The same loads go straight to the backends too ("direct"), which marks the ceiling of
// the client and backend on these cores; "reference" is bench/reference-relay.c, the I/O
// pattern of divert's native relay in plain C with as many processes as divert has
// workers, which marks what that pattern allows here without divert's host runtime (Node,
// libuv, JavaScript, bookkeeping). divert proxy runs with BENCH_PROXY_WORKERS workers; HAProxy runs
// with nbthread 1 (the same cores) and nbthread 2. Every round measures every target once
// in turn; each cell shows the median of BENCH_PROXY_REPS rounds. The load phases hold
// flock /tmp/bench.lock (other benches on this machine may take it too). Every process
// started here is stopped by its PID, also on error and on SIGINT/SIGTERM.
//
// Environment:
//   BENCH_PROXY_SECONDS      seconds per iperf3 / wrk / fixed-rate run, default 3
//   BENCH_PROXY_REPS         rounds, median shown, default 2
//   BENCH_PROXY_STREAMS      parallel iperf3 streams, default 20
//   BENCH_PROXY_CONNECTIONS  wrk's connections, default 50
//   BENCH_PROXY_RATE         new connections a second for the latency run, default 500
//   BENCH_PROXY_ONLY         comma list of direct, reference, divert, before, haproxy1, haproxy2 (default all)
//   BENCH_PROXY_BEFORE       another build's dist/src/main.js (kept below this repository, so that it finds
//                            node_modules): measured in the same rounds as "before", for before/after figures
//   BENCH_PROXY_CPU_PROF     a folder: divert proxy runs under node --cpu-prof, its profile written there
//   BENCH_PROXY_LOCK         0: do not take /tmp/bench.lock
//   BENCH_PROXY_WORKERS      divert proxy's --workers, default 2 (its CPU counted over the primary and its workers)
//   BENCH_PROXY_REVERSE      1: iperf3 -R, the backend sends (the direction a mirror serves in); default: the client sends

import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnChild } from '../test/helpers/children.js';
import { positive } from './env-knobs.js';
import { missingPackages } from './peerbench.js';
import { Processes, runBench } from './processes.js';
import { cpuSeconds, fixedRate, iperf, wrk } from './proxy-load.js';
import {
  PROXY_WORKERS,
  startDivertProxy,
  startHaproxy,
  startHttpBackend,
  startIperfServer,
  startReferenceRelay,
  type Backends,
} from './proxy-peers.js';
import { freePort } from './redis-server.js';
import { RssSampler } from './rss-sampler.js';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'src', 'main.js');
const LOCK = '/tmp/bench.lock';
const TARGETS = ['direct', 'reference', 'divert', 'before', 'haproxy1', 'haproxy2'] as const;
type TargetId = (typeof TARGETS)[number];

const settings = {
  seconds: positive('BENCH_PROXY_SECONDS', 3),
  reps: positive('BENCH_PROXY_REPS', 2),
  streams: positive('BENCH_PROXY_STREAMS', 20),
  connections: positive('BENCH_PROXY_CONNECTIONS', 50),
  rate: positive('BENCH_PROXY_RATE', 500),
  only: (process.env.BENCH_PROXY_ONLY || TARGETS.join(',')).split(',').map((s) => s.trim()),
  cpuProf: process.env.BENCH_PROXY_CPU_PROF ? resolve(process.env.BENCH_PROXY_CPU_PROF) : undefined,
  lock: process.env.BENCH_PROXY_LOCK !== '0',
  before: process.env.BENCH_PROXY_BEFORE ? resolve(process.env.BENCH_PROXY_BEFORE) : undefined,
};
const processes = new Processes();

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

interface Target {
  id: TargetId;
  label: string;
  child: ChildProcess | undefined;
  bulk: number;
  short: number;
}

/** One round's figures for one target. */
interface Round {
  bulk1: number;
  bulkN: number;
  bulkNCpu: number | undefined;
  perSecond: number;
  shortErrors: number;
  shortCpu: number | undefined;
  wrkCpu: number;
  p50: number;
  p99: number;
  latencyFailed: number;
}

/** The share of one core the target's process used while `work` ran; undefined for direct. */
async function withCpu<T>(target: Target, work: () => Promise<T>): Promise<[T, number | undefined]> {
  const pid = target.child?.pid;
  const before = pid === undefined ? 0 : cpuSeconds(pid);
  const t0 = performance.now();
  const value = await work();
  const wall = (performance.now() - t0) / 1000;
  return [value, pid === undefined ? undefined : (cpuSeconds(pid) - before) / wall];
}

async function round(target: Target): Promise<Round> {
  const { seconds } = settings;
  const bulk1 = await iperf(processes, target.bulk, seconds, 1);
  const bulkN = await iperf(processes, target.bulk, seconds, settings.streams, target.child?.pid);
  const [short, shortCpu] = await withCpu(target, () => wrk(processes, target.short, seconds, settings.connections));
  const latency = await fixedRate(target.short, settings.rate, seconds);
  return {
    bulk1: bulk1.gbps,
    bulkN: bulkN.gbps,
    bulkNCpu: bulkN.proxyCpu,
    perSecond: short.perSecond,
    shortErrors: short.errors,
    shortCpu,
    wrkCpu: short.clientCpu,
    p50: latency.p50,
    p99: latency.p99,
    latencyFailed: latency.failed,
  };
}

/** Holds flock on LOCK in a `sleep` whose PID is tracked: stopping it releases the lock. */
async function takeLock(): Promise<ChildProcess> {
  const child = processes.track(
    spawnChild('sh', ['-c', `exec 9>>${LOCK}; flock -w 600 9 || exit 1; echo locked; exec sleep 3600`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let waited = false;
  const timer = setTimeout(() => {
    waited = true;
    log(`waiting for ${LOCK} (another bench holds it)`);
  }, 1000);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`could not take ${LOCK} (exit ${code})`)));
  });
  clearTimeout(timer);
  if (waited) log(`${LOCK} taken`);
  return child;
}

function version(command: string, args: string[]): string {
  // wrk -v prints its version and exits 1: the first line printed is kept whatever the exit
  const run = spawnSync(command, args, { encoding: 'utf8', timeout: 5000 });
  return `${run.stdout ?? ''}${run.stderr ?? ''}`.split('\n')[0].trim() || `${command}: unknown version`;
}

const median = (values: number[]) => {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function fmt(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—';
}

function render(targets: Target[], rounds: Map<TargetId, Round[]>, rss: Map<TargetId, number | undefined>, started: Date): string {
  const s = settings;
  const knobs = [
    `BENCH_PROXY_SECONDS=${s.seconds}`,
    `BENCH_PROXY_REPS=${s.reps}`,
    `BENCH_PROXY_STREAMS=${s.streams}`,
    `BENCH_PROXY_CONNECTIONS=${s.connections}`,
    `BENCH_PROXY_RATE=${s.rate}`,
    ...(process.env.BENCH_PROXY_ONLY ? [`BENCH_PROXY_ONLY=${process.env.BENCH_PROXY_ONLY}`] : []),
    ...(s.cpuProf ? [`BENCH_PROXY_CPU_PROF=${s.cpuProf}`] : []),
    ...(s.before ? [`BENCH_PROXY_BEFORE=${s.before}`] : []),
  ];
  const cell = (id: TargetId, pick: (r: Round) => number | undefined) => median((rounds.get(id) ?? []).map((r) => pick(r) ?? NaN));
  interface Row {
    name: string;
    pick: (r: Round) => number | undefined;
    digits: number;
    ratio: boolean;
  }
  const rows: Row[] = [
    { name: 'bulk, 1 stream, Gbit/s', pick: (r) => r.bulk1, digits: 2, ratio: true },
    { name: `bulk, ${s.streams} streams, Gbit/s`, pick: (r) => r.bulkN, digits: 2, ratio: true },
    { name: `new connections/s (wrk -c${s.connections}, Connection: close)`, pick: (r) => r.perSecond, digits: 0, ratio: true },
    { name: `connect → first byte p50 at ${s.rate}/s, ms (lower is better)`, pick: (r) => r.p50, digits: 3, ratio: true },
    { name: `connect → first byte p99 at ${s.rate}/s, ms (lower is better)`, pick: (r) => r.p99, digits: 3, ratio: true },
    {
      name: `proxy CPU, ${s.streams} streams, % of a core`,
      pick: (r) => (r.bulkNCpu === undefined ? undefined : r.bulkNCpu * 100),
      digits: 0,
      ratio: false,
    },
    {
      // CPU per unit of work holds up better than the rates when other work shares the cores
      name: `proxy CPU per GB relayed, ${s.streams} streams, ms (lower is better)`,
      pick: (r) => (r.bulkNCpu === undefined ? undefined : (r.bulkNCpu / (r.bulkN / 8)) * 1000),
      digits: 0,
      ratio: true,
    },
    {
      name: 'proxy CPU, new connections, % of a core',
      pick: (r) => (r.shortCpu === undefined ? undefined : r.shortCpu * 100),
      digits: 0,
      ratio: false,
    },
    {
      name: 'proxy CPU per new connection, µs (lower is better)',
      pick: (r) => (r.shortCpu === undefined ? undefined : (r.shortCpu / r.perSecond) * 1e6),
      digits: 0,
      ratio: true,
    },
    { name: "wrk's CPU, new connections, % of a core", pick: (r) => r.wrkCpu * 100, digits: 0, ratio: false },
  ];
  const has = (id: TargetId) => targets.some((t) => t.id === id);
  const peers = targets.map((t) => t.label);
  const ratios = (['haproxy1', 'haproxy2', 'reference', 'before'] as const).filter((id) => has(id) && has('divert'));
  const header = `| metric | ${peers.join(' | ')} |${ratios.map((id) => ` divert / ${targets.find((t) => t.id === id)!.label} |`).join('')}`;
  const lines = [header, `|---|${peers.map(() => '---:|').join('')}${ratios.map(() => '---:|').join('')}`];
  for (const row of rows) {
    const values = targets.map((t) => cell(t.id, row.pick));
    const ratioCells = ratios.map((id) => {
      if (!row.ratio) return '';
      const r = cell('divert', row.pick) / cell(id, row.pick);
      return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
    });
    lines.push(`| ${row.name} | ${values.map((v) => fmt(v, row.digits)).join(' | ')} |${ratioCells.map((c) => ` ${c} |`).join('')}`);
  }
  const rssCells = targets.map((t) => (t.child ? fmt(rss.get(t.id) ?? NaN, 1) : '—'));
  const rssRatios = ratios.map((id) => {
    const r = (rss.get('divert') ?? NaN) / (rss.get(id) ?? NaN);
    return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
  });
  lines.push(`| largest RSS during the run, MB | ${rssCells.join(' | ')} |${rssRatios.map((c) => ` ${c} |`).join('')}`);

  const raw = targets.map((t) => {
    const rs = rounds.get(t.id) ?? [];
    const list = (pick: (r: Round) => number, d: number) => rs.map((r) => fmt(pick(r), d)).join(', ');
    const errors = rs.reduce((n, r) => n + r.shortErrors, 0);
    const failed = rs.reduce((n, r) => n + r.latencyFailed, 0);
    return (
      `- ${t.label}: bulk 1 [${list((r) => r.bulk1, 2)}], bulk ${s.streams} [${list((r) => r.bulkN, 2)}], ` +
      `conn/s [${list((r) => r.perSecond, 0)}] (wrk errors ${errors}), p50 [${list((r) => r.p50, 3)}], p99 [${list((r) => r.p99, 3)}] ` +
      `(failed ${failed} of ${rs.length * s.rate * s.seconds})`
    );
  });
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return [
    `## divert proxy against HAProxy, ${started.toISOString()}`,
    '',
    `Command: \`${knobs.join(' ')} npm run bench:proxy\``,
    '',
    `Machine: ${availableParallelism()} cores (${cpu}), load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at the end; node ${process.version}; ${version('haproxy', ['-v'])}; ${version('iperf3', ['--version'])}; ` +
      `${version('wrk', ['-v'])}. Client, backends and proxies share these cores. HAProxy: \`mode tcp\`, default ` +
      `settings (no splicing), timeouts 3 s connect / 60 s client and server. divert proxy: ${PROXY_WORKERS} worker(s) (BENCH_PROXY_WORKERS), two address targets, ` +
      `no divert serve (an address target relays without it). Each cell: median of ${s.reps} rounds; every round measures ` +
      `every target once, in turn.`,
    '',
    ...lines,
    '',
    'Every round (the cells above are their medians):',
    '',
    ...raw,
    '',
  ].join('\n');
}

async function bench(): Promise<void> {
  const missing = missingPackages([
    ['haproxy', 'haproxy'],
    ['iperf3', 'iperf3'],
    ['wrk', 'wrk'],
  ]);
  if (missing.length > 0) {
    log(`missing ${missing.join(', ')}; install with:\n  apt-get install -y ${missing.join(' ')}`);
    process.exit(2);
  }
  const started = new Date();
  const work = mkdtempSync(join(tmpdir(), 'divert-proxybench-'));
  const ctx = { dir: work, track: (child: ChildProcess) => void processes.track(child) };
  const backends: Backends = { iperf: await freePort(), http: await freePort() };
  await startIperfServer(ctx, backends.iperf);
  await startHttpBackend(ctx, backends.http);
  log(`backends: iperf3 -s on 127.0.0.1:${backends.iperf}, HTTP (haproxy) on 127.0.0.1:${backends.http}; logs in ${work}`);

  const targets: Target[] = [];
  const want = (id: TargetId) => settings.only.includes(id);
  if (want('direct'))
    targets.push({ id: 'direct', label: 'direct (no proxy)', child: undefined, bulk: backends.iperf, short: backends.http });
  if (want('reference')) {
    const peer = await startReferenceRelay(ctx, PROXY_WORKERS, { bulk: await freePort(), short: await freePort() }, backends);
    if (typeof peer === 'string') log(`no reference relay: ${peer}`);
    else targets.push({ id: 'reference', ...peer });
  }
  if (want('divert')) {
    const nodeArgs = settings.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', settings.cpuProf] : [];
    const ports = { bulk: await freePort(), short: await freePort(), status: await freePort() };
    const peer = await startDivertProxy(ctx, main, ports, backends, nodeArgs);
    targets.push({
      id: 'divert',
      label: `divert proxy (${PROXY_WORKERS} worker${PROXY_WORKERS === 1 ? '' : 's'})`,
      child: peer.child,
      bulk: peer.bulk,
      short: peer.short,
    });
  }
  if (settings.before && want('before')) {
    const ports = { bulk: await freePort(), short: await freePort(), status: await freePort() };
    const peer = await startDivertProxy(ctx, settings.before, ports, backends, [], 'divert-proxy-before');
    targets.push({ id: 'before', label: 'divert proxy, BENCH_PROXY_BEFORE', child: peer.child, bulk: peer.bulk, short: peer.short });
  }
  for (const threads of [1, 2] as const) {
    if (!want(`haproxy${threads}`)) continue;
    const peer = await startHaproxy(ctx, threads, { bulk: await freePort(), short: await freePort() }, backends);
    targets.push({ id: `haproxy${threads}`, ...peer });
  }
  if (targets.length === 0) throw new Error(`BENCH_PROXY_ONLY names none of ${TARGETS.join(', ')}`);

  const samplers = new Map<TargetId, RssSampler>();
  for (const t of targets) {
    if (!t.child?.pid) continue;
    const pidFile = join(work, `${t.id}.pid`);
    writeFileSync(pidFile, `${t.child.pid}\n`);
    const sampler = new RssSampler(pidFile, 200);
    sampler.start();
    samplers.set(t.id, sampler);
  }

  const lock = settings.lock ? await takeLock() : undefined;
  const rounds = new Map<TargetId, Round[]>(targets.map((t) => [t.id, []]));
  try {
    for (let rep = 1; rep <= settings.reps; rep++) {
      for (const target of targets) {
        log(`round ${rep}/${settings.reps}: ${target.label}`);
        rounds.get(target.id)!.push(await round(target));
      }
    }
  } finally {
    if (lock) await processes.stop(lock);
  }
  const rss = new Map<TargetId, number | undefined>();
  for (const [id, sampler] of samplers) {
    const summary = sampler.stop();
    rss.set(id, Math.max(summary.primaryMb ?? 0, summary.largestWorkerMb ?? 0) || undefined);
  }
  const text = render(targets, rounds, rss, started);
  const path = join(work, 'bench-proxy.md');
  writeFileSync(path, text);
  process.stdout.write(text);
  log(`report written to ${path}`);
}

await runBench(processes, bench);
