// Encrypted DNS rows of `npm run bench` (issue 17): divert and dnsdist answering DNS over
// TLS and DNS over HTTPS (HTTP/2) on the intercepted mix (a) and the 90 % forwarded mix
// (c), one server at a time, in the same run: divert, then dnsdist, `reps` times in turn,
// each started afresh, and per server and cell the run with the median QPS (this
// machine's speed drifts over minutes: one run each put dnsdist's DoH on (a) anywhere
// from 47k to 109k queries/s on different runs, and the ratio with it). DoT is loaded
// with dnsperf -m dot. DoH with h2load (nghttp2-client), GET /dns-query?dns= for every
// query of the mix: dnsperf 2.10's -m doh takes one reply per connection at a time (a
// second one in flight ends it with "frame received when already having a dns msg"; with
// one query in flight it manages a few dozen a second against either server), so it
// cannot load a server. With the configs run.sh rendered into its RUNDIR: NSD (the
// upstream, 127.0.0.1:15301) is started again; divert gets --listen-tls/--listen-https
// with a certificate made here; dnsdist gets run.sh's rendered config (Lua table of the
// 1,000 names, packet cache off) plus addTLSLocal and addDOHLocal with the same
// certificate. Server CPU is read from /proc (the process and its children) around each
// run. Every process started here is tracked by `processes` and stopped by its PID.

import { readFileSync, writeFileSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import { join } from 'node:path';
import { execChild, execChildSync, spawnChild } from '../test/helpers/children.js';
import { waitForAnswer } from './latency-runs.js';
import type { Processes } from './processes.js';
import { cpuSeconds } from './proxy-load.js';
import { medians } from './rounds.js';

const NSD_PORT = 15301;
const MIX_FILES: Record<string, string> = { a: 'intercept.txt', c: 'mix90.txt' };
const PORTS = { divert: { dot: 15355, doh: 15356, udp: 15354 }, dnsdist: { dot: 15313, doh: 15314 } };

export type Transport = 'dot' | 'doh';

/** One dnsperf run at full rate of one server, transport and mix. */
export interface EncryptedCell {
  label: string;
  transport: Transport;
  mix: string;
  qps: number;
  lossPct: number;
  avgMs: number;
  /** Server CPU per answered query, µs. */
  usPerQuery: number;
  /** How many runs this cell is the median of (1 for one run). */
  runs: number;
}

export interface EncryptedRunsOptions {
  /** The peerbench copy run.sh ran from (its gen/ folder). */
  copy: string;
  /** run.sh's RUNDIR for that run: nsd.conf and dnsdist.conf, rendered. */
  runDir: string;
  seconds: number;
  /** Runs per server and cell, divert and dnsdist in turn; the one with the median QPS is kept. */
  reps: number;
  /** divert serve's command line, given its UDP listen address and the extra TLS arguments. */
  divert: (listen: string, extra: string[]) => { command: string; args: string[] };
  divertLabel: string;
  dnsdistLabel: string;
  log: (line: string) => void;
}

export async function encryptedRuns(options: EncryptedRunsOptions, processes: Processes): Promise<EncryptedCell[]> {
  const { runDir, log } = options;
  const cert = join(runDir, 'bench-tls.crt');
  const key = join(runDir, 'bench-tls.key');
  execChildSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=bench.divert.test', '-addext', 'subjectAltName=DNS:bench.divert.test,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' }); // prettier-ignore
  const cells: EncryptedCell[] = [];
  const nsd = processes.track(spawnChild('nsd', ['-d', '-c', join(runDir, 'nsd.conf')], { cwd: runDir, stdio: 'ignore' }));
  try {
    if (!(await waitForAnswer(NSD_PORT, 'h00001.bench.test', 15_000))) {
      log(`encrypted DNS: NSD did not answer on 127.0.0.1:${NSD_PORT}; not measured`);
      return cells;
    }
    const tls = ['--listen-tls', `127.0.0.1:${PORTS.divert.dot}`, '--listen-https', `127.0.0.1:${PORTS.divert.doh}`];
    const divert = options.divert(`127.0.0.1:${PORTS.divert.udp}`, [...tls, '--tls-cert', cert, '--tls-key', key]);
    const conf = join(runDir, 'dnsdist-tls.conf');
    writeFileSync(
      conf,
      `${readFileSync(join(runDir, 'dnsdist.conf'), 'utf8')}\n` +
        `addTLSLocal('127.0.0.1:${PORTS.dnsdist.dot}', '${cert}', '${key}')\n` +
        `addDOHLocal('127.0.0.1:${PORTS.dnsdist.doh}', '${cert}', '${key}', '/dns-query')\n`,
    );
    const dnsdist = { command: 'dnsdist', args: ['--supervised', '--disable-syslog', '-C', conf] };
    for (let rep = 1; rep <= options.reps; rep++) {
      if (options.reps > 1) log(`encrypted DNS: run ${rep} of ${options.reps}`);
      cells.push(...(await measureServer(options, processes, options.divertLabel, divert, PORTS.divert.udp, PORTS.divert)));
      cells.push(...(await measureServer(options, processes, options.dnsdistLabel, dnsdist, 15310, PORTS.dnsdist)));
    }
  } finally {
    await processes.stop(nsd);
  }
  return medianCells(cells);
}

/** Per server, transport and mix, the run with the median QPS (the lower middle for an even count), with `runs` set. */
export function medianCells(cells: readonly EncryptedCell[]): EncryptedCell[] {
  return medians(
    cells,
    (c) => `${c.label}\u0000${c.transport}\u0000${c.mix}`,
    (c) => c.qps,
  ).map(({ median, group }) => ({ ...median, runs: group.length }));
}

/** Starts a server, waits for its answers over UDP, measures DoT and DoH on (a) and (c), and stops it. */
async function measureServer(
  options: EncryptedRunsOptions,
  processes: Processes,
  label: string,
  server: { command: string; args: string[] },
  udpPort: number,
  ports: Record<Transport, number>,
): Promise<EncryptedCell[]> {
  const child = processes.track(spawnChild(server.command, server.args, { cwd: options.runDir, stdio: 'ignore' }));
  const cells: EncryptedCell[] = [];
  try {
    for (const name of ['www1.shop.test', 'h00001.bench.test'])
      if (!(await waitForAnswer(udpPort, name, 15_000))) {
        options.log(`encrypted DNS: ${label} did not answer ${name} on 127.0.0.1:${udpPort}`);
        return cells;
      }
    for (const transport of ['dot', 'doh'] as const)
      for (const mix of ['a', 'c']) {
        const file = join(options.copy, 'gen', MIX_FILES[mix]);
        try {
          const load = transport === 'dot' ? dotLoad(ports.dot, file) : dohLoad(ports.doh, file, options.runDir, mix);
          await execChild(load.command, load.args(2), { maxBuffer: 64 << 20 }); // warm
          const before = cpuSeconds(child.pid!);
          const { stdout } = await execChild(load.command, load.args(options.seconds), { maxBuffer: 64 << 20 });
          const cpu = cpuSeconds(child.pid!) - before;
          const cell = { label, transport, mix, ...load.parse(stdout), usPerQuery: NaN, runs: 1 };
          cell.usPerQuery = (cpu * 1e6) / (cell.qps * options.seconds);
          options.log(
            `encrypted DNS: ${label} ${transport} (${mix}) ${cell.qps.toFixed(0)} QPS, lost ${cell.lossPct} %, ` +
              `avg ${cell.avgMs.toFixed(3)} ms, ${cell.usPerQuery.toFixed(1)} µs CPU/query`,
          );
          cells.push(cell);
        } catch (err) {
          options.log(`encrypted DNS: dnsperf -m ${transport} against ${label} (${mix}) failed: ${(err as Error).message}`);
        }
      }
    return cells;
  } finally {
    await processes.stop(child);
  }
}

interface Load {
  command: string;
  args: (seconds: number) => string[];
  parse: (stdout: string) => { qps: number; lossPct: number; avgMs: number };
}

function dotLoad(port: number, file: string): Load {
  const base = ['-m', 'dot', '-s', '127.0.0.1', '-p', String(port), '-d', file, '-c', '20', '-q', '200'];
  return { command: 'dnsperf', args: (seconds) => [...base, '-l', String(seconds)], parse: parseSummary };
}

/** h2load over the mix's queries as GET URIs (ID 0, RD, as a browser sends them): 20 connections, 10 streams each. */
function dohLoad(port: number, file: string, dir: string, mix: string): Load {
  const uris = join(dir, `doh-${mix}-${port}.txt`);
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const wire = (line: string) => {
    const [name, type] = line.trim().split(/\s+/);
    return dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }] });
  };
  writeFileSync(uris, lines.map((l) => `https://127.0.0.1:${port}/dns-query?dns=${wire(l).toString('base64url')}`).join('\n') + '\n');
  return {
    command: 'h2load',
    args: (seconds) => ['-i', uris, '-c', '20', '-m', '10', '-t', '1', '-D', String(seconds)],
    parse: parseH2load,
  };
}

/** h2load's summary: requests a second, failed %, mean time per request (ms). */
export function parseH2load(text: string): { qps: number; lossPct: number; avgMs: number } {
  const figure = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const total = figure(/requests: (\d+) total/);
  const succeeded = figure(/(\d+) succeeded/);
  const mean = /time for request:\s+\S+\s+\S+\s+(\d+(?:\.\d+)?)(us|ms|s)/.exec(text);
  const scale = mean ? { us: 0.001, ms: 1, s: 1000 }[mean[2] as 'us' | 'ms' | 's'] : NaN;
  return {
    qps: figure(/finished in [\d.]+m?s, ([\d.]+) req\/s/),
    lossPct: total > 0 ? ((total - succeeded) / total) * 100 : NaN,
    avgMs: mean ? Number(mean[1]) * scale : NaN,
  };
}

/** dnsperf's summary: queries per second, lost %, average latency (ms). */
export function parseSummary(text: string): { qps: number; lossPct: number; avgMs: number } {
  const figure = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    qps: figure(/Queries per second:\s+([\d.]+)/),
    lossPct: figure(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    avgMs: figure(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
}

/** The report's rows: divert against dnsdist per transport and mix, with the ratios. */
export function renderEncrypted(cells: EncryptedCell[], divertLabel: string, dnsdistLabel: string, seconds: number): string[] {
  if (cells.length === 0) return ['Encrypted DNS: not measured (see the log).'];
  const find = (label: string, transport: Transport, mix: string) =>
    cells.find((c) => c.label === label && c.transport === transport && c.mix === mix);
  const n = (v: number | undefined, digits = 0) =>
    v === undefined || Number.isNaN(v) ? '—' : v.toLocaleString('en', { maximumFractionDigits: digits });
  const rows = (['dot', 'doh'] as const).flatMap((transport) =>
    ['a', 'c'].map((mix) => {
      const d = find(divertLabel, transport, mix);
      const p = find(dnsdistLabel, transport, mix);
      const ratio = d && p ? `**${(d.qps / p.qps).toFixed(2)}×**` : '—';
      return (
        `| ${transport === 'dot' ? 'DoT' : 'DoH (HTTP/2)'} | (${mix}) | ${n(d?.qps)} | ${n(p?.qps)} | ${ratio} | ` +
        `${n(d?.usPerQuery, 1)} / ${n(p?.usPerQuery, 1)} | ${n(d?.avgMs, 2)} / ${n(p?.avgMs, 2)} |`
      );
    }),
  );
  const runs = Math.max(...cells.map((c) => c.runs));
  const each = runs === 1 ? 'one run each' : `the median of ${runs} runs each by QPS, divert and dnsdist in turn, each started afresh`;
  return [
    `### Encrypted DNS: DoT with dnsperf -m dot -c 20 -q 200, DoH with h2load -c 20 -m 10 (GET), ${seconds} s per run, ${each}`,
    '',
    `| transport | mix | ${divertLabel} QPS | ${dnsdistLabel} QPS | ratio | CPU µs/query divert / dnsdist | avg ms divert / dnsdist |`,
    '|---|---|---:|---:|---:|---:|---:|',
    ...rows,
  ];
}
