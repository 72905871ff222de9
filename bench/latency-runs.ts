// Latency at a fixed rate, measured after run.sh: run.sh's own fixed-rate run has no -v, so
// no p99, and covers mix (c) only. With the configs run.sh rendered into its RUNDIR, NSD
// (the upstream, 127.0.0.1:15301) is started again, and next to it divert, then dnsdist,
// one at a time, `reps` times in turn (a fresh process each time, so neither gets the
// quieter minutes); each is warmed for 2 s and measured with run.sh's fixed-rate command
// plus -v (dnsperf -Q <qps> -c 20 -T 1 -q 100 -l 5 -v): divert on (a) and (c), dnsdist on
// (c). Per server and mix the run with the median average is kept. Every process started
// here is tracked by `processes` and stopped by its PID, also when a step fails.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execChild, execChildSync, spawnChild } from '../test/helpers/children.js';
import { parseVerbose, type FixedRate } from './dnsperf-verbose.js';
import type { Processes } from './processes.js';
import { medians } from './rounds.js';

const NSD_PORT = 15301;
const DNSDIST_PORT = 15310; // run.sh's rendered dnsdist.conf listens here
const MIX_FILES: Record<string, string> = { a: 'intercept.txt', c: 'mix90.txt' };

/** A server to start, and the port it answers on. */
export interface Server {
  label: string;
  port: number;
  command: string;
  args: string[];
}

export interface LatencyRunsOptions {
  /** The peerbench copy run.sh ran from (its gen/ folder). */
  copy: string;
  /** run.sh's RUNDIR for that run: nsd.conf and dnsdist.conf, rendered. */
  runDir: string;
  qps: number;
  /** Runs per server and mix; the one with the median average is kept. */
  reps: number;
  divert: Server;
  dnsdistLabel: string;
  log: (line: string) => void;
}

export async function latencyRuns(options: LatencyRunsOptions, processes: Processes): Promise<FixedRate[]> {
  const { runDir, log } = options;
  const results: FixedRate[] = [];
  const nsd = processes.track(spawnChild('nsd', ['-d', '-c', join(runDir, 'nsd.conf')], { cwd: runDir, stdio: 'ignore' }));
  try {
    const upstream = await waitForAnswer(NSD_PORT, 'h00001.bench.test', 15_000);
    if (!upstream) log(`fixed-rate latency: NSD did not answer on 127.0.0.1:${NSD_PORT}; only divert's (a) is measured`);
    const conf = join(runDir, 'dnsdist.conf');
    const dnsdist: Server = {
      label: options.dnsdistLabel,
      port: DNSDIST_PORT,
      command: 'dnsdist',
      args: ['--supervised', '--disable-syslog', '-C', conf],
    };
    for (let rep = 1; rep <= options.reps; rep++) {
      log(`fixed-rate latency: run ${rep} of ${options.reps}`);
      results.push(...(await measureServer(options, processes, options.divert, upstream ? ['a', 'c'] : ['a'])));
      if (upstream && existsSync(conf)) results.push(...(await measureServer(options, processes, dnsdist, ['c'])));
    }
  } finally {
    await processes.stop(nsd);
  }
  return medianRuns(results);
}

/** Per server and mix, the run with the median average (the lower middle one of an even count), with `runs` set. */
export function medianRuns(runs: FixedRate[]): FixedRate[] {
  return medians(
    runs,
    (run) => `${run.label}\u0000${run.mix}`,
    (run) => run.avgMs,
  ).map(({ median, group }) => ({ ...median, runs: group.length }));
}

/** Starts `server`, waits for its answers, measures it on each mix, and stops it. */
async function measureServer(options: LatencyRunsOptions, processes: Processes, server: Server, mixes: string[]): Promise<FixedRate[]> {
  const { label, port } = server;
  const child = processes.track(spawnChild(server.command, server.args, { cwd: options.runDir, stdio: 'ignore' }));
  const results: FixedRate[] = [];
  try {
    const names = mixes.includes('c') ? ['www1.shop.test', 'h00001.bench.test'] : ['www1.shop.test'];
    for (const name of names) {
      if (!(await waitForAnswer(port, name, 15_000))) {
        options.log(`fixed-rate latency: ${label} did not answer ${name} on 127.0.0.1:${port}`);
        return results;
      }
    }
    for (const mix of mixes) {
      const file = join(options.copy, 'gen', MIX_FILES[mix]);
      const base = ['-s', '127.0.0.1', '-p', String(port), '-d', file];
      try {
        await execChild('dnsperf', [...base, '-l', '2', '-c', '4', '-q', '50'], { maxBuffer: 64 << 20 }); // warm
        const run = ['-c', '20', '-T', '1', '-q', '100', '-Q', String(options.qps), '-l', '5', '-v'];
        const { stdout } = await execChild('dnsperf', [...base, ...run], { maxBuffer: 512 << 20 });
        const stats = parseVerbose(stdout);
        options.log(
          `fixed-rate latency: ${label} (${mix}) ${stats.answers} answers, avg ${stats.avgMs.toFixed(3)} ms, p50 ${stats.p50Ms.toFixed(3)} ms, ` +
            `p99 ${stats.p99Ms.toFixed(3)} ms, ${stats.slowPct.toFixed(2)} % over 1 ms`,
        );
        results.push({ label, mix, ...stats });
      } catch (err) {
        options.log(`fixed-rate latency: dnsperf against ${label} (${mix}) failed: ${(err as Error).message}`);
      }
    }
    return results;
  } finally {
    await processes.stop(child);
  }
}

/** True once `name` gets an A answer over UDP on 127.0.0.1:`port`, false after `ms`. */
export async function waitForAnswer(port: number, name: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if (
        /^\d+\./m.test(
          execChildSync('dig', ['+short', '+time=1', '+tries=1', '-p', String(port), '@127.0.0.1', name, 'A'], { encoding: 'utf8' }),
        )
      )
        return true;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
