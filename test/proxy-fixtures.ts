// For the proxy tests: TCP and UDP echo mirrors on loopback addresses (each reply names
// the mirror that made it), a `divert proxy` process, and clients that talk through it.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { logLinesOf, stopServer, waitFor, writeConfig, TEST_TOKEN, type LogLine } from './monitor-fixtures.js';
import type { TestServer } from './helpers/divert.js';
import type { Connection } from '../src/proxy/connections.js';

/** A TCP mirror: answers each line "L" with "ADDRESS:L", so a client sees who answered. */
export class TcpMirror {
  private server: Server | undefined;
  readonly sockets = new Set<Socket>();
  /** Connections it has accepted, ever. */
  accepted = 0;

  constructor(
    readonly address: string,
    public port = 0,
  ) {}

  async start(): Promise<void> {
    const server = createServer((socket) => {
      this.accepted++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      let pending = '';
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString();
        let cut: number;
        while ((cut = pending.indexOf('\n')) !== -1) {
          socket.write(`${this.address}:${pending.slice(0, cut)}\n`);
          pending = pending.slice(cut + 1);
        }
      });
    });
    server.listen(this.port, this.address);
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await stopServer(server, this.sockets);
  }
}

/** A UDP mirror: answers each datagram "D" with "ADDRESS:D". */
export class UdpMirror {
  private socket: UdpSocket | undefined;
  constructor(
    readonly address: string,
    public port = 0,
  ) {}

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => socket.send(`${this.address}:${msg.toString()}`, rinfo.port, rinfo.address));
    socket.bind(this.port, this.address);
    await once(socket, 'listening');
    this.port = socket.address().port;
    this.socket = socket;
  }

  async stop(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

/** Sets `name`'s A addresses (TTL 30) through the admin API, as an operator would. */
export async function setAddresses(server: TestServer, name: string, addresses: string[]): Promise<void> {
  const res = await server.api(`/v1/names/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ a: addresses, ttl: 30 }),
  });
  if (!res.ok) throw new Error(`PUT ${name}: HTTP ${res.status} ${await res.text()}`);
}

/** Mirrors on each address, all on one port (a target has one port): the first picks it. */
export async function startTcpMirrors(addresses: string[]): Promise<TcpMirror[]> {
  const first = new TcpMirror(addresses[0]);
  await first.start();
  const rest = addresses.slice(1).map((a) => new TcpMirror(a, first.port));
  for (const m of rest) await m.start();
  return [first, ...rest];
}

export async function startUdpMirrors(addresses: string[]): Promise<UdpMirror[]> {
  const first = new UdpMirror(addresses[0]);
  await first.start();
  const rest = addresses.slice(1).map((a) => new UdpMirror(a, first.port));
  for (const m of rest) await m.start();
  return [first, ...rest];
}

export interface ProxyProcess {
  proc: DivertProcess;
  statusAt: string;
  /** Where each service listens, as the start line says. */
  listening: Record<string, string[]>;
  /** The port of the service's first listen address. */
  port(service: string): number;
  connections(): Promise<Connection[]>;
  get(path: string): Promise<Response>;
  logs(): LogLine[];
  stop(): Promise<void>;
}

/** `divert proxy` on the config; one process unless `args` say otherwise (its default is one worker per CPU); its status endpoint on `status` (default: a port the OS picks). */
export async function startProxy(
  config: Record<string, unknown>,
  server: TestServer | { adminUrl: string },
  args: string[] = ['--workers', '1'],
  status = '127.0.0.1:0',
): Promise<ProxyProcess> {
  const path = writeConfig(config);
  const proc = runDivert([
    'proxy',
    '--config',
    path,
    '--admin',
    server.adminUrl,
    '--token',
    TEST_TOKEN,
    '--status',
    status,
    '--log-level',
    'debug',
    ...args,
  ]);
  const logs = () => logLinesOf(proc);
  const start = await waitFor(
    async () => logs().find((l) => typeof l.status === 'string' && l.listening !== undefined),
    10_000,
    `proxy's start line; stderr: ${proc.stderr()}`,
  ).catch(async (err: Error) => {
    await proc.stop();
    throw err;
  });
  const statusAt = start.status as string;
  const listening = start.listening as Record<string, string[]>;
  const get = (p: string) => fetch(`http://${statusAt}${p}`);
  return {
    proc,
    statusAt,
    listening,
    port: (service) => Number(/:(\d+)$/.exec(listening[service][0])![1]),
    connections: async () => ((await (await get('/v1/connections')).json()) as { connections: Connection[] }).connections,
    get,
    logs,
    stop: () => proc.stop(),
  };
}

/** A line-based TCP client: say(text) resolves with the next reply line, or rejects when the connection ends first. */
export async function lineClient(port: number, host = '127.0.0.1', localAddress?: string) {
  const socket = connect({ port, host, localAddress });
  await once(socket, 'connect');
  let buffered = '';
  let ended = false;
  const waiters: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let cut: number;
    while ((cut = buffered.indexOf('\n')) !== -1 && waiters.length > 0) {
      const line = buffered.slice(0, cut);
      buffered = buffered.slice(cut + 1);
      waiters.shift()!.resolve(line);
    }
  });
  const fail = () => {
    ended = true;
    for (const w of waiters.splice(0)) w.reject(new Error('the connection ended'));
  };
  socket.on('close', fail);
  socket.on('error', fail);
  return {
    socket,
    get ended() {
      return ended;
    },
    say(text: string, timeoutMs = 3000): Promise<string> {
      if (ended) return Promise.reject(new Error('the connection ended'));
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reply to "${text}" within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(err);
          },
        });
        socket.write(`${text}\n`);
      });
    },
    close: () => socket.destroy(),
  };
}

/** Which mirror answers a new connection through the proxy. */
export async function whoAnswers(port: number): Promise<string> {
  const c = await lineClient(port);
  try {
    return (await c.say('who')).split(':')[0];
  } finally {
    c.close();
  }
}

/** One datagram through the proxy from `socket`; the reply's text. */
export function udpSay(socket: UdpSocket, port: number, text: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('message', onMessage);
      reject(new Error(`no reply to "${text}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (msg: Buffer) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      resolve(msg.toString());
    };
    socket.on('message', onMessage);
    socket.send(text, port, '127.0.0.1');
  });
}
