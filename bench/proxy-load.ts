// The loads of `npm run bench:proxy`, each bounded in time (and the fixed-rate one in
// count): iperf3 for bulk throughput, wrk with `Connection: close` for new connections
// per second, and a Node client at a fixed rate for connect latency. CPU is read from
// /proc: a proxy's by its PID around a run, a load tool's as this process's reaped
// children's time (cutime + cstime), which grows by exactly the tool's CPU when it exits.

import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnChild } from '../test/helpers/children.js';
import { childrenOf } from '../test/helpers/process.js';
import type { Processes } from './processes.js';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function statFields(pid: number | 'self'): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the fields after "(comm)": the comm may hold spaces; index 0 is field 3 (state)
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds (user + system, all threads) the process and its live children (a proxy's workers) have used so far. */
export function cpuSeconds(pid: number): number {
  return [pid, ...childrenOf(pid)].reduce((sum, p) => {
    try {
      const f = statFields(p);
      return sum + (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
    } catch {
      return sum; // it ended meanwhile
    }
  }, 0);
}

/** CPU seconds of this process's children that have exited and been reaped. */
function reapedChildrenCpu(): number {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND;
}

export interface ToolRun {
  stdout: string;
  stderr: string;
  code: number | null;
  /** The tool's own CPU seconds. */
  cpu: number;
  wallSeconds: number;
}

/** Runs a load tool; it is stopped by its PID when it has not ended within timeoutMs. */
export async function runTool(processes: Processes, command: string, args: string[], timeoutMs: number): Promise<ToolRun> {
  const cpuBefore = reapedChildrenCpu();
  const started = performance.now();
  const child = processes.track(spawnChild(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => {
    stderr += `\n(stopped after ${timeoutMs} ms)`;
    void processes.stop(child, 2000);
  }, timeoutMs);
  const code = await exited;
  clearTimeout(timer);
  return { stdout, stderr, code, cpu: reapedChildrenCpu() - cpuBefore, wallSeconds: (performance.now() - started) / 1000 };
}

export interface Bulk {
  gbps: number;
  clientCpu: number;
  /** The proxy's CPU over the run that counted, as a share of one core; undefined without its PID. */
  proxyCpu: number | undefined;
}

/**
 * iperf3 through `port` for `seconds` with `streams` parallel streams: what the receiver got,
 * Gbit/s. iperf3 -s runs one test at a time and may still be closing the last one (its
 * connections go through the proxy): "busy" is tried again, up to 10 times, 500 ms apart.
 */
export async function iperf(processes: Processes, port: number, seconds: number, streams: number, proxyPid?: number): Promise<Bulk> {
  const args = [
    '-c',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    String(seconds),
    '-P',
    String(streams),
    '-J',
    '--connect-timeout',
    '3000',
    ...(process.env.BENCH_PROXY_REVERSE === '1' ? ['-R'] : []),
  ];
  for (let attempt = 1; ; attempt++) {
    const proxyBefore = proxyPid === undefined ? 0 : cpuSeconds(proxyPid);
    const run = await runTool(processes, 'iperf3', args, (seconds + 20) * 1000);
    const proxyCpu = proxyPid === undefined ? undefined : (cpuSeconds(proxyPid) - proxyBefore) / run.wallSeconds;
    let parsed: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
    try {
      parsed = JSON.parse(run.stdout) as typeof parsed;
    } catch {
      throw new Error(`iperf3 ${args.join(' ')}: no JSON (exit ${run.code}): ${run.stderr.trim() || run.stdout.slice(0, 300)}`);
    }
    if (parsed.error?.includes('busy') && attempt < 10) {
      await sleep(500);
      continue;
    }
    const bps = parsed.end?.sum_received?.bits_per_second;
    if (parsed.error || bps === undefined) throw new Error(`iperf3 ${args.join(' ')}: ${parsed.error ?? 'no sum_received'}`);
    return { gbps: bps / 1e9, clientCpu: run.cpu / run.wallSeconds, proxyCpu };
  }
}

export interface Short {
  perSecond: number;
  errors: number;
  /** wrk's CPU, as a share of one core over its run. */
  clientCpu: number;
}

/** wrk with one thread and `connections` connections, each request on a new connection (Connection: close). */
export async function wrk(processes: Processes, port: number, seconds: number, connections: number): Promise<Short> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '2s', '-H', 'Connection: close', `http://127.0.0.1:${port}/`];
  const run = await runTool(processes, 'wrk', args, (seconds + 20) * 1000);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(run.stdout);
  if (run.code !== 0 || !rate) throw new Error(`wrk ${args.join(' ')} (exit ${run.code}): ${run.stderr.trim() || run.stdout}`);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(run.stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(run.stdout);
  const errors = (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { perSecond: Number(rate[1]), errors, clientCpu: run.cpu / run.wallSeconds };
}

export interface Latency {
  p50: number;
  p99: number;
  done: number;
  failed: number;
}

/**
 * `rate` new connections a second for `seconds` (rate × seconds in all): each sends one
 * HTTP/1.0 request; its latency is from the connect() call to the first reply byte, ms.
 * A connection without a reply within 2 s counts as failed.
 */
export async function fixedRate(port: number, rate: number, seconds: number): Promise<Latency> {
  const total = Math.round(rate * seconds);
  const times: number[] = [];
  let failed = 0;
  let launched = 0;
  const pending = new Set<Promise<void>>();
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const socket = connect({ host: '127.0.0.1', port, noDelay: true });
      let settled = false;
      const finish = (ms: number | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ms === null) failed++;
        else times.push(ms);
        socket.destroy();
        resolve();
      };
      const timer = setTimeout(() => finish(null), 2000);
      socket.once('connect', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
      socket.once('data', () => finish(performance.now() - t0));
      socket.once('error', () => finish(null));
      socket.once('close', () => finish(null)); // closed before any reply
    });
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (launched < due) {
        launched++;
        const p = one().finally(() => pending.delete(p));
        pending.add(p);
      }
      if (launched >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  await Promise.all(pending);
  times.sort((a, b) => a - b);
  const at = (q: number) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))] : NaN);
  return { p50: at(0.5), p99: at(0.99), done: times.length, failed };
}
