// Failure-to-divert time: from killing the active mirror to the first DNS answer that no
// longer holds it, with a real divert serve, divert monitor and two HTTP mirrors on
// loopback. `npm run bench:failover` (node dist/bench/failover.js [TRIALS]).

import type { ChildProcess } from 'node:child_process';
import { spawnChild } from '../test/helpers/children.js';
import { MAIN, runDivert } from '../test/helpers/process.js';
import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { stringify } from 'yaml';

const TOKEN = 'bench-token-0123456789abcdef';
const NAME = 'www.shop.example';
const POLL_MS = 5;
const TRIALS = Number(process.argv[2] ?? 10);

class Mirror {
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(readonly address: string) {}

  async start(): Promise<void> {
    const server = createServer((_req, res) => res.end('ok'));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(this.port, this.address, () => resolve()));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** As a crash looks from outside: the port refuses and open connections drop. */
  kill(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
    this.server = undefined;
  }
}

function waitForLine(child: ChildProcess, test: (line: string) => boolean, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no start line within 15 s`)), 15_000);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find(test);
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
  });
}

/** Asks for NAME A every POLL_MS ms until `done` holds for an answer; resolves with that time. */
function pollUntil(port: number, done: (addresses: string[]) => boolean, timeoutMs: number): Promise<number> {
  const socket = createSocket('udp4');
  let id = 0;
  return new Promise((resolve, reject) => {
    const finish = (value: number | Error) => {
      clearInterval(timer);
      clearTimeout(limit);
      socket.close();
      if (value instanceof Error) reject(value);
      else resolve(value);
    };
    socket.on('message', (msg) => {
      const reply = dnsPacket.decode(msg);
      const addresses = (reply.answers ?? []).flatMap((a) => (a.type === 'A' ? [a.data] : []));
      if (addresses.length > 0 && done(addresses)) finish(performance.now());
    });
    const ask = () => {
      id = (id + 1) % 65536;
      socket.send(
        dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: NAME, type: 'A', class: 'IN' }] }),
        port,
        '127.0.0.1',
      );
    };
    const timer = setInterval(ask, POLL_MS);
    const limit = setTimeout(() => finish(new Error(`no such answer within ${timeoutMs} ms`)), timeoutMs);
    ask();
  });
}

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  const stopAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
  process.on('exit', stopAll);
  try {
    const active = new Mirror('127.0.0.2');
    const standby = new Mirror('127.0.0.3');
    await active.start();
    await standby.start();

    const serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--admin-token', TOKEN, '--upstream', '127.0.0.1:9', '--workers', '1']);
    children.push(serve.child);
    const line = await serve.listeningLine(30_000);
    const dnsPort = Number(line.listen[0].split(':').pop());

    const config = {
      services: [
        {
          name: 'web',
          names: [NAME],
          policy: 'failover',
          check: { type: 'http', path: '/', interval: '1s', timeout: '500ms', rise: 2, fall: 2 },
          mirrors: [
            { address: active.address, port: active.port, priority: 0 },
            { address: standby.address, port: standby.port, priority: 10 },
          ],
        },
      ],
    };
    const path = join(mkdtempSync(join(tmpdir(), 'divert-bench-failover-')), 'monitor.yaml');
    writeFileSync(path, stringify(config));
    process.stdout.write(`monitor config (${path}):\n${stringify(config)}\n`);

    const monitor = spawnChild(
      process.execPath,
      [MAIN, 'monitor', '--config', path, '--admin', `http://${line.admin}`, '--token', TOKEN, '--status', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(monitor);
    await waitForLine(monitor, (l) => l.includes('"status"'), 'divert monitor');
    await pollUntil(dnsPort, (a) => a.join() === active.address, 15_000);

    const times: number[] = [];
    for (let trial = 1; trial <= TRIALS; trial++) {
      // a kill at a random moment of the check interval, as a real crash would be
      await sleep(Math.random() * 1000);
      const killed = performance.now();
      active.kill();
      const diverted = await pollUntil(dnsPort, (a) => !a.includes(active.address), 15_000);
      const ms = diverted - killed;
      times.push(ms);
      await active.start();
      const restored = performance.now();
      await pollUntil(dnsPort, (a) => a.includes(active.address), 15_000);
      process.stdout.write(
        `trial ${String(trial).padStart(2)}: diverted after ${ms.toFixed(0).padStart(5)} ms; back ${((performance.now() - restored) / 1000).toFixed(1)} s after the restart\n`,
      );
    }
    const sorted = [...times].sort((x, y) => x - y);
    const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
    process.stdout.write(
      `\nfailure-to-divert over ${TRIALS} kills: median ${median.toFixed(0)} ms, min ${sorted[0].toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms\n`,
    );
    process.stdout.write(
      `(bound: interval × fall + one interval = 3000 ms; expected between interval × (fall − 1) = 1000 ms and interval × fall = 2000 ms plus the push)\n`,
    );
  } finally {
    stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:failover: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
