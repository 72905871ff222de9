// For the monitor tests: HTTP mirror servers on loopback addresses whose health and load
// a test flips, a `divert monitor` process, and DNS answers read with real queries.

import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { decode, query, startDivert, TEST_TOKEN, udpAsk, type TestServer } from './helpers/divert.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { tempDir } from './helpers/temp-files.js';
import type { StatusReport } from '../src/monitor/monitor.js';
import { parseMonitorConfig } from '../src/monitor/config.js';
import { isDivertError } from '../src/errors.js';
import assert from 'node:assert/strict';

/** An HTTP mirror: GET /health answers 200 while healthy (503 otherwise), GET /load its load as JSON. */
export class Mirror {
  healthy = true;
  load = 0;
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly address: string) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      if (req.url === '/load') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ load: this.load }));
        return;
      }
      res.writeHead(this.healthy ? 200 : 503);
      res.end(this.healthy ? 'ok' : 'unhealthy');
    });
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // the same port again after a stop, so the monitor's config still points at it
      server.listen(this.port, this.address, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and drops open connections, as a killed server would. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await stopServer(server, this.sockets);
  }
}

/** Drops the open connections, as a killed server would, and stops listening. */
export async function stopServer(
  server: { close(done: () => void): unknown } | undefined,
  sockets: Iterable<{ destroy(): void }>,
): Promise<void> {
  if (!server) return;
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function startMirrors(addresses: string[]): Promise<Mirror[]> {
  const mirrors = addresses.map((a) => new Mirror(a));
  for (const m of mirrors) await m.start();
  return mirrors;
}

export const FAST_CHECK = { type: 'http', path: '/health', interval: '200ms', timeout: '150ms', rise: 2, fall: 2 };

export function writeConfig(config: unknown, ext: 'yaml' | 'json' = 'yaml'): string {
  const dir = tempDir('monitor');
  const path = join(dir, `monitor.${ext}`);
  writeFileSync(path, ext === 'json' ? JSON.stringify(config, null, 2) : stringify(config));
  return path;
}

/** Mirrors as the config lists them: the loopback address and the port the OS gave. */
export const mirrorsOf = (mirrors: Mirror[], extra: Record<string, unknown>[] = []) =>
  mirrors.map((m, i) => ({ address: m.address, port: m.port, ...extra[i] }));

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** The JSON log lines a divert process has written to stdout so far. */
export function logLinesOf(proc: DivertProcess): LogLine[] {
  return proc
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

export interface MonitorProcess {
  proc: DivertProcess;
  statusAt: string;
  status(): Promise<StatusReport>;
  metrics(): Promise<string>;
  logs(): LogLine[];
  stop(): Promise<void>;
}

export async function startMonitor(configPath: string, server: TestServer, args: string[] = []): Promise<MonitorProcess> {
  const proc = runDivert([
    'monitor',
    '--config',
    configPath,
    '--admin',
    server.adminUrl,
    '--token',
    TEST_TOKEN,
    '--status',
    '127.0.0.1:0',
    '--log-level',
    'debug',
    ...args,
  ]);
  const logs = () => logLinesOf(proc);
  const statusAt = await waitFor(
    async () => logs().find((l) => typeof l.status === 'string')?.status as string | undefined,
    10_000,
    `monitor's start line; stderr: ${proc.stderr()}`,
  );
  return {
    proc,
    statusAt,
    status: async () => (await (await fetch(`http://${statusAt}/status`)).json()) as StatusReport,
    metrics: async () => (await fetch(`http://${statusAt}/metrics`)).text(),
    logs,
    stop: () => proc.stop(),
  };
}

/** Polls `probe` until it gives a value other than undefined/false; fails after `timeoutMs`. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** The A addresses `name` answers now, sorted (one UDP query). */
export async function answersA(server: TestServer, name: string): Promise<string[]> {
  const reply = decode(await udpAsk(server.port, query(name, 'A'), 2000));
  return (reply.answers ?? []).flatMap((a) => (a.type === 'A' ? [a.data] : [])).sort();
}

/** Waits until `name` answers exactly `addresses`; resolves with the ms it took. */
export async function answersBecome(server: TestServer, name: string, addresses: string[], timeoutMs: number): Promise<number> {
  const want = [...addresses].sort().join(',');
  const started = performance.now();
  let last = '';
  await waitFor(
    async () => (last = (await answersA(server, name)).join(',')) === want,
    timeoutMs,
    `${name} answering ${want} (last: ${last || 'nothing'})`,
    5,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last answer ${last || 'none'}`);
  });
  return performance.now() - started;
}

/** A divert serve that forwards nothing anywhere (its upstream is a closed loopback port). */
export function startServe(options: Record<string, unknown> = {}): Promise<TestServer> {
  return startDivert({ upstream: ['127.0.0.1:9'], ...options });
}

/** The value of a metric line (`name{labels} value`) whose text starts with `prefix`. */
export function metric(text: string, prefix: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

export { TEST_TOKEN };

/** That the monitor's config `data` is refused with one line (from "m.yaml") matching `pattern`. */
export function rejectsConfig(data: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseMonitorConfig(data, 'm.yaml'),
    (err: unknown) => {
      assert.ok(isDivertError(err, 'BAD_CONFIG'), String(err));
      assert.match((err as Error).message, pattern);
      assert.doesNotMatch((err as Error).message, /\n/);
      return true;
    },
  );
}
