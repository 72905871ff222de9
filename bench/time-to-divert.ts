// Time to divert: from sending an admin write to the first DNS answer that carries the
// new address, on the instance written to and on a second replica sharing its Redis.

import type { ChildProcess } from 'node:child_process';
import { spawnChild } from '../test/helpers/children.js';
import { createSocket, type Socket } from 'node:dgram';
import { createServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const TOKEN = 'bench-token-0123456789abcdef';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A query for `name` A, built once; the reply's last 4 bytes are the (single) address. */
function queryFor(name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** Asks `port` until the answer is `address`; resolves with the time it was seen. */
function pollUntil(socket: Socket, port: number, query: Buffer, address: string, deadline: number): Promise<number> {
  const want = Buffer.from(address.split('.').map(Number));
  return new Promise((resolve, reject) => {
    const onMessage = (msg: Buffer) => {
      if (msg.length >= 16 && msg.subarray(msg.length - 4).equals(want)) {
        clearInterval(timer);
        socket.off('message', onMessage);
        resolve(performance.now());
      }
    };
    socket.on('message', onMessage);
    const ask = () => {
      if (performance.now() > deadline) {
        clearInterval(timer);
        socket.off('message', onMessage);
        reject(new Error(`no answer ${address} in time`));
        return;
      }
      socket.send(query, port, '127.0.0.1');
    };
    const timer = setInterval(ask, 0.2);
    ask();
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** `serveArgs` go to both replicas (e.g. --workers); each must report it listens within `startTimeoutMs`. */
export async function timeToDivert(
  main: string,
  changes: number,
  children: ChildProcess[],
  serveArgs: string[] = [],
  startTimeoutMs = 30_000,
): Promise<string[]> {
  const redisPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'divert-bench-redis-'));
  const redis = spawnChild(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  children.push(redis);
  await sleep(300);

  const replicas: { dns: number; admin: string }[] = [];
  for (let i = 0; i < 2; i++) {
    const child = spawnChild(
      process.execPath,
      [
        main,
        'serve',
        '--listen',
        '127.0.0.1:0',
        '--admin',
        '127.0.0.1:0',
        '--admin-token',
        TOKEN,
        '--upstream',
        '127.0.0.1:9',
        '--redis',
        `redis://127.0.0.1:${redisPort}`,
        '--redis-prefix',
        'bench:',
        ...serveArgs,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    replicas.push(
      await new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(`time-to-divert: replica ${i + 1} (pid ${child.pid}) did not report "listening on" within ${startTimeoutMs} ms`),
            ),
          startTimeoutMs,
        );
        child.once('exit', (code) => reject(new Error(`time-to-divert: replica ${i + 1} exited with ${code} before listening`)));
        let out = '';
        child.stdout!.on('data', (c) => {
          out += c;
          const line = out.split('\n').find((l) => l.includes('"listening on'));
          if (line) {
            const parsed = JSON.parse(line) as { listen: string[]; admin: string };
            clearTimeout(timer);
            resolve({ dns: Number(parsed.listen[0].split(':')[1]), admin: `http://${parsed.admin}` });
          }
        });
      }),
    );
  }
  const [a, b] = replicas;
  const name = 'moving.bench.test';
  const query = queryFor(name);
  const put = (address: string) =>
    fetch(`${a.admin}/v1/names/${name}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ a: [address] }),
    });
  const socketA = createSocket('udp4');
  const socketB = createSocket('udp4');
  await put('10.0.0.0');
  const same: number[] = [];
  const other: number[] = [];
  for (let i = 1; i <= changes; i++) {
    const address = `10.0.${i >> 8}.${i & 255}`;
    // both replicas have the old answer cached: the change must reach them, not a miss
    const sent = performance.now();
    const seen = Promise.all([
      pollUntil(socketA, a.dns, query, address, sent + 2000),
      pollUntil(socketB, b.dns, query, address, sent + 2000),
    ]);
    const response = await put(address);
    if (response.status !== 200) throw new Error(`PUT: HTTP ${response.status}`);
    const [atA, atB] = await seen;
    same.push(atA - sent);
    other.push(atB - sent);
  }
  socketA.close();
  socketB.close();
  const row = (label: string, times: number[]) => {
    const sorted = [...times].sort((x, y) => x - y);
    return `| ${label} | ${percentile(sorted, 50).toFixed(2)} | ${percentile(sorted, 99).toFixed(2)} | ${sorted[sorted.length - 1].toFixed(2)} |`;
  };
  return [
    `Time to divert over ${changes} changes (admin PUT sent → first DNS answer with the new address; both replicas had the old one cached):`,
    '',
    '| where | median ms | p99 ms | max ms |',
    '|---|---:|---:|---:|',
    row('the instance written to', same),
    row('a second replica (Redis pub/sub)', other),
  ];
}
