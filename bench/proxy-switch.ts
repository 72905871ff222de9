// Time to move through divert proxy: from sending an admin write (a name's new address)
// to the first new connection through the proxy that reaches the new mirror. A real
// divert serve and divert proxy, two TCP mirrors on 127.0.0.2 and 127.0.0.3 that answer
// with their own address; new connections opened back to back while waiting.
// `npm run bench:proxy-switch` (node dist/bench/proxy-switch.js [CHANGES]).

import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runDivert, type DivertProcess } from '../test/helpers/process.js';
import { percentile } from './dnsperf-verbose.js';

const TOKEN = 'bench-token-0123456789abcdef';
const NAME = 'www.shop.example';
const CHANGES = Number(process.argv[2] ?? 50);
const ADDRESSES = ['127.0.0.2', '127.0.0.3'];

/** A mirror: writes its own address to every connection and closes it. */
async function mirror(address: string, port: number): Promise<Server> {
  const server = createServer((socket) => socket.end(address));
  server.listen(port, address);
  await once(server, 'listening');
  return server;
}

/** Which mirror a new connection through the proxy reaches ('' when it fails). */
function whoAnswers(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('close', () => resolve(text));
    socket.on('error', () => {});
  });
}

async function main(): Promise<void> {
  const first = await mirror(ADDRESSES[0], 0);
  const port = (first.address() as { port: number }).port;
  const mirrors = [first, await mirror(ADDRESSES[1], port)];
  const children: DivertProcess[] = [];
  try {
    const serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--admin-token', TOKEN, '--upstream', '127.0.0.1:9', '--workers', '1']);
    children.push(serve);
    const admin = `http://${(await serve.listeningLine(30_000)).admin}`;
    const put = (address: string) =>
      fetch(`${admin}/v1/names/${NAME}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ a: [address], ttl: 30 }),
      }).then((r) => {
        if (!r.ok) throw new Error(`PUT: HTTP ${r.status}`);
      });
    await put(ADDRESSES[0]);
    const dir = mkdtempSync(join(tmpdir(), 'divert-proxy-switch-'));
    const config = join(dir, 'proxy.yaml');
    writeFileSync(config, stringify({ services: [{ name: 'web', listen: '127.0.0.1:0', target: { name: NAME, port } }] }));
    const proxy = runDivert(['proxy', '--config', config, '--admin', admin, '--token', TOKEN, '--status', '127.0.0.1:0', '--workers', '2']);
    children.push(proxy);
    let proxyPort = 0;
    const deadline = Date.now() + 15_000;
    while (proxyPort === 0 && Date.now() < deadline) {
      const line = proxy
        .stdout()
        .split('\n')
        .find((l) => l.includes('"listening"'));
      if (line) proxyPort = Number((JSON.parse(line) as { listening: Record<string, string[]> }).listening.web[0].split(':').pop());
      else await new Promise((r) => setTimeout(r, 50));
    }
    if (proxyPort === 0) throw new Error(`the proxy did not start: ${proxy.stderr()}`);

    const times: number[] = [];
    for (let i = 1; i <= CHANGES; i++) {
      const want = ADDRESSES[i % 2];
      await put(want);
      const acknowledged = performance.now();
      // every worker must have it: several new connections in a row must all reach the new mirror
      let streak = 0;
      let firstSeen = 0;
      while (streak < 4) {
        if (performance.now() - acknowledged > 5000) throw new Error(`change ${i}: ${want} not reached within 5 s`);
        if ((await whoAnswers(proxyPort)) === want) {
          if (streak === 0) firstSeen = performance.now();
          streak++;
        } else streak = 0;
      }
      times.push(firstSeen - acknowledged);
    }
    const sorted = Float64Array.from(times).sort();
    const f = (ms: number) => `${ms.toFixed(1)} ms`;
    process.stdout.write(
      `divert proxy (2 workers): admin write acknowledged → new connections reach the new mirror, over ${CHANGES} changes:\n` +
        `  median ${f(percentile(sorted, 50))}, p99 ${f(percentile(sorted, 99))}, max ${f(sorted[sorted.length - 1])} (target ≤ 50 ms)\n`,
    );
  } finally {
    for (const c of children) await c.stop();
    for (const m of mirrors) m.close();
  }
}

await main();
