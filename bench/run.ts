// npm run bench: queries per second and latency of `divert serve` under dnsperf on
// loopback, for intercepted and forwarded names over UDP and TCP. Every run is bounded
// by dnsperf's -l; every process started here is stopped by its PID.
//
// Environment: BENCH_SECONDS (default 10) per run, BENCH_REPS (default 3; the median
// is shown), BENCH_CHANGES (default 1000) for time-to-divert.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timeToDivert } from './time-to-divert.js';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'src', 'main.js');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const reps = Number(process.env.BENCH_REPS ?? 3);
const work = mkdtempSync(join(tmpdir(), 'divert-bench-'));
const children: ChildProcess[] = [];

function requireDnsperf(): void {
  try {
    execFileSync('dnsperf', ['-h'], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write('bench: dnsperf is not installed (apt-get install -y dnsperf)\n');
      process.exit(2);
    }
  }
}

/** Starts a process and resolves with the first line matching `pattern`'s group 1. */
function start(args: string[], pattern: RegExp): Promise<string> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

interface Run {
  qps: number;
  avgLatencyMs: number;
  lost: number;
}

function dnsperf(port: number, file: string, mode: 'udp' | 'tcp'): Run {
  const out = execFileSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-m', mode, '-c', mode === 'tcp' ? '20' : '1', '-q', '200', '-t', '2'], { encoding: 'utf8' });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    lost: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
  };
}

function median(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.qps - b.qps);
  return sorted[Math.floor(sorted.length / 2)];
}

function rssMb(pid: number): number {
  const status = execFileSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' });
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function bench(): Promise<void> {
  requireDnsperf();
  const names = 1000;
  const zone = ['$ORIGIN shop.test.', '$TTL 30', ...Array.from({ length: names }, (_, i) => `www${i + 1} IN A 192.0.2.${(i % 250) + 1}`)].join('\n');
  writeFileSync(join(work, 'shop.zone'), zone + '\n');
  const intercepted = join(work, 'intercepted.txt');
  writeFileSync(intercepted, Array.from({ length: names }, (_, i) => `www${i + 1}.shop.test A`).join('\n') + '\n');
  const forwarded = join(work, 'forwarded.txt');
  writeFileSync(forwarded, Array.from({ length: 10_000 }, (_, i) => `h${i + 1}.bench.test A`).join('\n') + '\n');

  const upstreamPort = Number(await start([join(here, 'upstream.js')], /^(\d+)\n/m));
  const divertArgs = [main, 'serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--admin-token', 'bench-token-0123456789abcdef', '--upstream', `127.0.0.1:${upstreamPort}`, '--zones', join(work, 'shop.zone'), '--log-level', 'info'];
  const divertLine = await start(divertArgs, /("listen":\["[^"]+"\])/);
  const port = Number(/:(\d+)"\]/.exec(divertLine)![1]);
  const divertPid = children[children.length - 1].pid!;

  const mixes: [string, string, 'udp' | 'tcp'][] = [
    ['intercepted (1,000 names)', intercepted, 'udp'],
    ['forwarded (10,000 names)', forwarded, 'udp'],
    ['intercepted, TCP (20 connections)', intercepted, 'tcp'],
    ['forwarded, TCP (20 connections)', forwarded, 'tcp'],
  ];
  const rows: string[] = [];
  for (const [label, file, mode] of mixes) {
    const runs = Array.from({ length: reps }, () => dnsperf(port, file, mode));
    const m = median(runs);
    rows.push(`| ${label} | ${mode} | ${Math.round(m.qps).toLocaleString('en')} | ${m.avgLatencyMs.toFixed(2)} | ${m.lost}% |`);
    process.stderr.write(`bench: ${label}: ${runs.map((r) => Math.round(r.qps)).join(', ')} QPS\n`);
  }
  const rss = rssMb(divertPid);
  process.stdout.write([
    `divert serve, 1 process, dnsperf on the same 2 cores, ${seconds} s × ${reps} runs (median), ${new Date().toISOString()}`,
    '',
    '| mix | transport | QPS | avg latency ms | lost |',
    '|---|---|---:|---:|---:|',
    ...rows,
    '',
    `RSS of divert after the runs: ${rss.toFixed(0)} MB`,
    '',
    ...(await timeToDivert(main, Number(process.env.BENCH_CHANGES ?? 1000), children)),
    '',
  ].join('\n'));
}

try {
  await bench();
} finally {
  for (const child of children) child.kill('SIGTERM');
}
