// The processes of `npm run bench:proxy`, all on 127.0.0.1: the two backends (an iperf3
// server that sinks bulk bytes, and an HAProxy in HTTP mode that answers every request
// itself with a short 200 and closes on `Connection: close`), and the proxies under test
// (divert proxy, HAProxy in TCP mode, and bench/reference-relay.c: divert's relay pattern
// in plain C), each with two services: bulk → iperf3, short → the HTTP backend. Each
// start resolves once its ports accept connections; the child is handed to `track` at
// once, so the caller stops it by PID whatever happens next.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { spawnChild } from '../test/helpers/children.js';

export interface Backends {
  /** iperf3 -s: the bulk sink (iperf3's control and data connections share its port). */
  iperf: number;
  /** HAProxy answering `GET /` with 200 "ok", for short connections. */
  http: number;
}

/** A proxy under test: where its bulk and short services listen. */
export interface Peer {
  label: string;
  child: ChildProcess;
  bulk: number;
  short: number;
}

export interface StartContext {
  dir: string;
  track: (child: ChildProcess) => void;
}

/**
 * Resolves once every port has a listening socket (/proc/net/tcp, state 0A: nothing
 * connects to it, so iperf3 -s does not read a probe as a test); rejects when the child
 * exits first or after timeoutMs.
 */
async function ready(child: ChildProcess, what: string, ports: number[], log: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const port of ports) {
    while (!listeningOn(port)) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}); log ${log}`);
      if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms; log ${log}`);
      await sleep(50);
    }
  }
}

function spawnLogged(ctx: StartContext, name: string, command: string, args: string[]): { child: ChildProcess; log: string } {
  const log = join(ctx.dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawnChild(command, args, { stdio: ['ignore', fd, fd] });
  ctx.track(child);
  return { child, log };
}

export async function startIperfServer(ctx: StartContext, port: number): Promise<ChildProcess> {
  const { child, log } = spawnLogged(ctx, 'iperf3-server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port)]);
  await ready(child, 'iperf3 -s', [port], log);
  return child;
}

function listeningOn(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === '0A';
    });
}

const HAPROXY_GLOBAL = ['global', '  maxconn 9000', '  log stderr format short local0 err'];
const HAPROXY_DEFAULTS = ['defaults', '  timeout connect 3s', '  timeout client 60s', '  timeout server 60s'];

export async function startHttpBackend(ctx: StartContext, port: number): Promise<ChildProcess> {
  const config = [
    ...HAPROXY_GLOBAL,
    '  nbthread 1',
    ...HAPROXY_DEFAULTS,
    '  mode http',
    'frontend answer',
    `  bind 127.0.0.1:${port}`,
    '  http-request return status 200 content-type text/plain string "ok"',
  ];
  const path = join(ctx.dir, 'http-backend.cfg');
  writeFileSync(path, config.join('\n') + '\n');
  const { child, log } = spawnLogged(ctx, 'http-backend', 'haproxy', ['-db', '-f', path]);
  await ready(child, 'the HTTP backend (haproxy)', [port], log);
  return child;
}

/** HAProxy in TCP mode with `nbthread threads`, default settings otherwise (no splicing). */
export async function startHaproxy(
  ctx: StartContext,
  threads: number,
  ports: { bulk: number; short: number },
  to: Backends,
): Promise<Peer> {
  const label = `haproxy nbthread ${threads}`;
  const config = [
    ...HAPROXY_GLOBAL,
    `  nbthread ${threads}`,
    ...HAPROXY_DEFAULTS,
    '  mode tcp',
    'frontend bulk',
    `  bind 127.0.0.1:${ports.bulk}`,
    '  default_backend bulk',
    'backend bulk',
    `  server iperf 127.0.0.1:${to.iperf}`,
    'frontend short',
    `  bind 127.0.0.1:${ports.short}`,
    '  default_backend short',
    'backend short',
    `  server http 127.0.0.1:${to.http}`,
  ];
  const path = join(ctx.dir, `haproxy-${threads}.cfg`);
  writeFileSync(path, config.join('\n') + '\n');
  const { child, log } = spawnLogged(ctx, `haproxy-${threads}`, 'haproxy', ['-db', '-f', path]);
  await ready(child, label, [ports.short], log);
  return { label, child, ...ports };
}

/** divert proxy's workers: BENCH_PROXY_WORKERS, default 2 (one per core here, as its own default). */
export const PROXY_WORKERS = Number(process.env.BENCH_PROXY_WORKERS ?? 2);

/**
 * divert proxy with two address targets. No divert serve runs: an address target relays
 * with the admin API unreachable (the proxy keeps retrying it in the background).
 */
export async function startDivertProxy(
  ctx: StartContext,
  main: string,
  ports: { bulk: number; short: number; status: number },
  to: Backends,
  nodeArgs: string[],
  name = 'divert-proxy',
): Promise<Peer> {
  const label = name;
  const service = (name: string, listen: number, port: number) =>
    [
      `  - name: ${name}`,
      `    listen: 127.0.0.1:${listen}`,
      '    protocol: tcp',
      `    target: { address: 127.0.0.1, port: ${port} }`,
      '    onChange: keep',
    ].join('\n');
  const config = [
    'maxConnections: 1000000',
    'maxConnectionsPerNetwork: 1000000',
    'services:',
    service('bulk', ports.bulk, to.iperf),
    service('short', ports.short, to.http),
  ];
  const path = join(ctx.dir, `${name}.yaml`);
  writeFileSync(path, config.join('\n') + '\n');
  const args = [
    ...nodeArgs,
    main,
    'proxy',
    '--config',
    path,
    '--admin',
    'http://127.0.0.1:9',
    '--token',
    'bench',
    '--status',
    `127.0.0.1:${ports.status}`,
    '--log-level',
    'warn',
    '--workers',
    String(PROXY_WORKERS),
  ];
  const { child, log } = spawnLogged(ctx, name, process.execPath, args);
  await ready(child, label, [ports.short], log);
  return { label, child, bulk: ports.bulk, short: ports.short };
}

/** Where bench/reference-relay.c is, from dist/bench/. */
const REFERENCE_SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'reference-relay.c');

/**
 * bench/reference-relay.c, built with cc into the bench's folder, with `workers` processes:
 * divert's relay pattern without its host runtime. Why not, when cc cannot build it.
 */
export async function startReferenceRelay(
  ctx: StartContext,
  workers: number,
  ports: { bulk: number; short: number },
  to: Backends,
): Promise<Peer | string> {
  const binary = join(ctx.dir, 'reference-relay');
  const cc = spawnSync('cc', ['-O2', '-o', binary, REFERENCE_SOURCE], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return `cc could not build ${REFERENCE_SOURCE}: ${cc.error?.message ?? cc.stderr.trim().split('\n')[0]}`;
  const label = `reference C relay (${workers} process${workers === 1 ? '' : 'es'})`;
  const args = [String(workers), `${ports.bulk}:${to.iperf}`, `${ports.short}:${to.http}`];
  const { child, log } = spawnLogged(ctx, 'reference-relay', binary, args);
  await ready(child, label, [ports.bulk, ports.short], log);
  return { label, child, ...ports };
}
