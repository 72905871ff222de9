// A real redis-server for tests: started on a free loopback port in its own temporary
// directory, or the one REDIS_URL names. Each test uses its own key prefix, so a
// shared server is safe and nothing a test did not create is touched.

import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { execChild, spawnChild } from './children.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export function uniquePrefix(label = 'test'): string {
  return `divert-test:${label}:${randomBytes(4).toString('hex')}:`;
}

export interface RedisProcess {
  url: string;
  port: number;
  /** Stop with SIGKILL (no chance to save). */
  kill(): Promise<void>;
  /** Start again on the same port and directory (data survives when persist was on). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** redis-server ended before it answered: most often its port was taken meanwhile. */
class ServerExited extends Error {
  constructor(url: string) {
    super(`redis-server for ${url} exited before answering (port taken?)`);
  }
}

/**
 * freePort() only says a port was free a moment ago: another test's socket may take it
 * before redis-server binds it. So start on fresh ports, and try again with new ones when
 * the server exits before answering, instead of waiting out the ping timeout.
 */
async function onFreePorts<T>(count: number, start: (ports: number[]) => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    try {
      return await start(ports);
    } catch (err) {
      if (!(err instanceof ServerExited) || tries >= 5) throw err;
    }
  }
}

const isRunning = (child: ChildProcess) => () => child.exitCode === null && child.signalCode === null;

async function waitForPing(url: string, timeoutMs: number, running: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!running()) throw new ServerExited(url);
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      return;
    } catch (err) {
      client.disconnect();
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms: ${String(err)}`, { cause: err });
      await sleep(50);
    }
  }
}

/**
 * Starts redis-server; `persist` turns on appendonly with fsync always, `password` sets
 * requirepass (and is part of `url`).
 */
export async function startRedis(options: { persist?: boolean; password?: string } = {}): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-redis-'));
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  let child: ChildProcess | undefined;
  let port = 0;
  const url = () => `redis://${auth}127.0.0.1:${port}`;
  const args = () => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    options.persist ? 'yes' : 'no',
    '--appendfsync',
    'always',
    '--logfile',
    join(dir, 'redis.log'),
    '--daemonize',
    'no',
    ...(options.password ? ['--requirepass', options.password] : []),
  ];
  const launch = async () => {
    const c = spawnChild('redis-server', args(), { stdio: 'ignore' });
    c.on('error', () => {});
    child = c;
    await waitForPing(url(), 10_000, isRunning(c));
  };
  const exit = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  };
  await onFreePorts(1, async ([free]) => {
    port = free;
    await launch();
  });
  return {
    url: url(),
    port,
    kill: () => exit('SIGKILL'),
    restart: launch, // the same port: clients reconnect to it
    stop: async () => {
      await exit('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function testRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  return startRedis();
}

/** Deletes every key under `prefix` (only the caller's own keys); UNLINK frees a big hash off the main thread. */
export async function dropPrefix(url: string, prefix: string): Promise<void> {
  const client = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 10_000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}

/** A server process that can be stopped (SIGTERM, waiting for its exit). */
function launch(args: string[]): { child: ChildProcess; stop(): Promise<void> } {
  const child = spawnChild('redis-server', args, { stdio: 'ignore' });
  child.on('error', () => {});
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

/** One command on a throw-away connection. */
async function ask(port: number, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    client.disconnect();
  }
}

export interface RedisCluster {
  /** redis-cluster:// with every node as a seed. */
  url: string;
  nodes: { host: string; port: number }[];
  /** Deletes every key under `prefix` on every node. */
  dropPrefix(prefix: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Three masters (no replicas) on free ports, each in its own directory, joined with
 * `redis-cli --cluster create`; resolves once every node says cluster_state:ok.
 */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-cluster-'));
  const servers: { stop(): Promise<void> }[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const nodeDir = join(dir, String(i));
      mkdirSync(nodeDir);
      ports.push(
        await onFreePorts(2, async ([port, busPort]) => {
          const server = launch([
            '--port',
            String(port),
            '--cluster-port',
            String(busPort),
            '--bind',
            '127.0.0.1',
            '--dir',
            nodeDir,
            '--save',
            '',
            '--appendonly',
            'no',
            '--daemonize',
            'no',
            '--logfile',
            join(nodeDir, 'redis.log'),
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${i}-${port}.conf`),
            '--cluster-node-timeout',
            '2000',
          ]);
          servers.push(server);
          await waitForPing(`redis://127.0.0.1:${port}`, 10_000, isRunning(server.child));
          return port;
        }),
      );
    }
    await execChild(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 30_000 },
    );
    for (const port of ports) {
      await waitFor(`cluster node ${port} not ok`, 20_000, async () => /cluster_state:ok/.test(String(await ask(port, 'CLUSTER', 'INFO'))));
    }
    const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
    return {
      url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
      nodes,
      dropPrefix: async (prefix) => {
        for (const node of nodes) await dropPrefix(`redis://${node.host}:${node.port}`, prefix);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface RedisSentinel {
  /** redis-sentinel:// naming the sentinel and master `mymaster` (with the master's password). */
  url: string;
  master: RedisProcess;
  stop(): Promise<void>;
}

/** A master (with `password`, if given) and one Sentinel watching it as `mymaster`. */
export async function startRedisSentinel(options: { password?: string } = {}): Promise<RedisSentinel> {
  const master = await startRedis({ password: options.password });
  const dir = mkdtempSync(join(tmpdir(), 'divert-sentinel-'));
  let sentinel: { stop(): Promise<void> } | undefined;
  const stop = async () => {
    await sentinel?.stop();
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = await onFreePorts(1, async ([free]) => {
      const conf = join(dir, `sentinel-${free}.conf`); // Sentinel rewrites its config file, so it must be its own
      writeFileSync(
        conf,
        [
          `port ${free}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `logfile ${join(dir, 'sentinel.log')}`,
          `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
          ...(options.password ? [`sentinel auth-pass mymaster ${options.password}`] : []),
          '',
        ].join('\n'),
      );
      const started = launch([conf, '--sentinel']);
      sentinel = started;
      await waitForPing(`redis://127.0.0.1:${free}`, 10_000, isRunning(started.child));
      return free;
    });
    await waitFor('sentinel does not know mymaster', 10_000, async () =>
      Array.isArray(await ask(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')),
    );
    const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
    return { url: `redis-sentinel://${auth}127.0.0.1:${port}/mymaster`, master, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
