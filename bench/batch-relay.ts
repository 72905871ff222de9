// npm run bench:batch-relay — how much a native, batched UDP path (recvmmsg/sendmmsg)
// saves where it matters most, on forwarding: the shared peerbench's raw relay
// (node/forward.js, on node:dgram) against the same relay on divert's own batched UDP
// addon (batch-relay/relay.ts on src/native/udp-batch.c, the socket of --udp-batch, built
// by npm run build), both one process forwarding the 10,000 names of mix (b) to NSD, with
// dnsperf as run.sh runs it. Runs alternate (dgram, batch, dgram, …) so that a busy
// moment hurts both alike. A benchmark prints figures; it asserts nothing.
//
// Environment: BENCH_SECONDS (default 6), BENCH_REPS (default 3), PEERBENCH_DIR.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execChildSync, spawnChild } from '../test/helpers/children.js';
import { parseVerbose } from './dnsperf-verbose.js';
import { copyPeerbench } from './peerbench.js';
import { Processes } from './processes.js';
import { loadUdpBatch } from '../src/transport/udp-batch.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const PEERBENCH = resolve(process.env.PEERBENCH_DIR ?? join(repoRoot, '..', 'shared', 'peerbench'));
const NSD_PORT = 15301; // run.sh's nsd.conf.in
const RELAY_PORT = 15360; // free in run.sh's 15300-15399 plan

interface Figures {
  qps: number;
  lostPct: number;
  usPerQuery: number;
}

/** CPU seconds (user + system) the process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (fields 14, 15) in clock ticks
}

function dnsperf(names: string, seconds: number): string {
  const load = `-t 2 -c 20 -T 1 -q 500 -l ${seconds}`.split(' ');
  return execChildSync('dnsperf', ['-s', '127.0.0.1', '-p', String(RELAY_PORT), '-d', names, ...load]);
}

async function measure(processes: Processes, label: string, command: string[], names: string): Promise<Figures> {
  const relay = processes.track(spawnChild(command[0], command.slice(1), { stdio: 'ignore' }));
  try {
    await sleep(500);
    dnsperf(names, 2); // warm-up
    const before = cpuSeconds(relay.pid!);
    const out = dnsperf(names, SECONDS);
    const cpu = cpuSeconds(relay.pid!) - before;
    const { qps, lossPct: lostPct } = parseVerbose(out); // its summary part: QPS and loss
    const figures = { qps, lostPct, usPerQuery: (cpu * 1e6) / (qps * SECONDS) };
    process.stderr.write(`${label}: ${qps.toFixed(0)} QPS, ${lostPct}% lost, ${figures.usPerQuery.toFixed(1)} µs/query\n`);
    return figures;
  } finally {
    await processes.stop(relay);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main(processes: Processes, work: string): Promise<void> {
  const copy = join(work, 'peerbench');
  copyPeerbench(PEERBENCH, copy);
  execChildSync('bash', [join(copy, 'gen.sh')]);
  const gen = join(copy, 'gen');
  const runDir = join(work, 'run');
  mkdirSync(runDir);
  const conf = readFileSync(join(copy, 'conf', 'nsd.conf.in'), 'utf8')
    .replaceAll('@GEN@', gen)
    .replaceAll('@RUN@', runDir)
    .replaceAll('@NSD_SERVERS@', '1');
  writeFileSync(join(runDir, 'nsd.conf'), conf);

  if (!loadUdpBatch()) throw new Error('the udp-batch addon is not built (npm run build needs cc)');

  const nsd = processes.track(spawnChild('nsd', ['-d', '-c', join(runDir, 'nsd.conf')], { cwd: runDir, stdio: 'ignore' }));
  await sleep(1000);
  const relays = [
    {
      label: 'node:dgram relay (peerbench forward.js)',
      command: [process.execPath, join(copy, 'node', 'forward.js'), String(RELAY_PORT), String(NSD_PORT)],
    },
    {
      label: 'batched relay (divert udp-batch.c)',
      command: [process.execPath, join(here, 'batch-relay', 'relay.js'), String(RELAY_PORT), String(NSD_PORT)],
    },
  ];
  const results = relays.map(() => [] as Figures[]);
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const [i, relay] of relays.entries())
        results[i].push(await measure(processes, relay.label, relay.command, join(gen, 'forward.txt')));
    }
  } finally {
    await processes.stop(nsd);
  }
  const rows = relays.map((relay, i) => ({
    label: relay.label,
    qps: median(results[i].map((f) => f.qps)),
    lost: Math.max(...results[i].map((f) => f.lostPct)),
    us: median(results[i].map((f) => f.usPerQuery)),
  }));
  const out = [
    `### One process relaying mix (b) to NSD, UDP (dnsperf -c 20 -T 1 -q 500 -l ${SECONDS}, median of ${REPS})`,
    '',
    '| relay | QPS | loss % (max) | CPU µs/query | QPS × dgram |',
    '|---|---:|---:|---:|---:|',
    ...rows.map(
      (r) => `| ${r.label} | ${r.qps.toFixed(0)} | ${r.lost.toFixed(2)} | ${r.us.toFixed(1)} | ${(r.qps / rows[0].qps).toFixed(2)}× |`,
    ),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

const processes = new Processes();
const work = mkdtempSync(join(tmpdir(), 'divert-batch-relay-'));
const stop = () => void processes.stopAll().finally(() => process.exit(130));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
main(processes, work)
  .catch((err: unknown) => {
    process.stderr.write(`bench:batch-relay: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await processes.stopAll();
    rmSync(work, { recursive: true, force: true });
  });
