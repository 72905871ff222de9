// Time to divert: from sending an admin write to the first DNS answer that carries the
// new address, on the instance written to and on a second replica sharing its Redis.

import type { ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDivert } from '../test/helpers/process.js';
import { percentile } from './dnsperf-verbose.js';
import { startRedis } from './redis-server.js';

const TOKEN = 'bench-token-0123456789abcdef';

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

/** `serveArgs` go to both replicas (e.g. --workers); each must report it listens within `startTimeoutMs`. */
export async function timeToDivert(
  changes: number,
  children: ChildProcess[],
  serveArgs: string[] = [],
  startTimeoutMs = 30_000,
): Promise<string[]> {
  const redis = await startRedis(mkdtempSync(join(tmpdir(), 'divert-bench-redis-')), (child) => children.push(child));
  const replicas: { dns: number; admin: string }[] = [];
  for (let i = 0; i < 2; i++) {
    const replica = runDivert([
      'serve',
      ...['--listen', '127.0.0.1:0', '--admin-token', TOKEN, '--upstream', '127.0.0.1:9'],
      ...['--redis', redis.url, '--redis-prefix', 'bench:', ...serveArgs],
    ]);
    children.push(replica.child);
    const line = await replica.listeningLine(startTimeoutMs);
    replicas.push({ dns: Number(line.listen[0].split(':').pop()), admin: `http://${line.admin}` });
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
