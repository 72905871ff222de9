// A private redis-server for the bench: loopback, a free port, no persistence.

import type { ChildProcess } from 'node:child_process';
import { spawnChild } from '../test/helpers/children.js';
import { createConnection, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BenchRedis {
  url: string;
  child: ChildProcess;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts redis-server in `dir`; resolves once it answers PING. `track` gets the child at once. */
export async function startRedis(dir: string, track: (child: ChildProcess) => void, timeoutMs = 10_000): Promise<BenchRedis> {
  const port = await freePort();
  const child = spawnChild(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  track(child);
  const deadline = Date.now() + timeoutMs;
  while (!(await ping(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server on 127.0.0.1:${port} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within ${timeoutMs} ms`);
    await sleep(100);
  }
  return { url: `redis://127.0.0.1:${port}`, child };
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}
