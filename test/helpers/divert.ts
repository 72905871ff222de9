// Runs `divert serve` in this process on loopback ports the OS picks, with the same
// configuration loader as the command line, and queries it with real sockets.

import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import dnsPacket from 'dns-packet';
import { lengthPrefix, TcpFramer } from '../../src/transport/tcp-framer.js';
import { loadServeConfig } from '../../src/config/load.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/server/server.js';
import { execChild } from './children.js';

export interface TestServer extends RunningServer {
  port: number;
  resolver: Resolver;
  /** http://127.0.0.1:PORT of the admin API. */
  adminUrl: string;
  /** fetch against the admin API with the token set. */
  api(path: string, init?: RequestInit): Promise<Response>;
}

export const TEST_TOKEN = 'test-token-0123456789abcdef';

/** Worker processes of servers started here: DIVERT_TEST_WORKERS (the test/workers.*.test.ts
 * files run whole suites again with several), else 1, so the server runs in this process. */
export const TEST_WORKERS = process.env.DIVERT_TEST_WORKERS ?? '1';

/** DIVERT_TEST_UDP_BATCH=0: every server the helpers start (here and in process.ts) has
 * --no-udp-batch, so that whole suites run on the node:dgram fallback (npm test's second
 * pass); 1 forces the addon; unset, the servers keep the default (the addon, where built). */
export const TEST_UDP_BATCH: boolean | undefined = ({ '0': false, '1': true } as Record<string, boolean>)[
  process.env.DIVERT_TEST_UDP_BATCH ?? ''
];

/** `options` are flags as the command line takes them (without dashes). */
/** Where a test reads the server's log lines (JSON, one per write). */
export interface LogSink {
  write(line: string): void;
}

export async function startDivert(
  options: Record<string, unknown>,
  start: StartOptions & { logStream?: LogSink } = {},
): Promise<TestServer> {
  const config = loadServeConfig(
    {
      listen: ['127.0.0.1:0'],
      admin: '127.0.0.1:0',
      'admin-token': TEST_TOKEN,
      'log-level': 'silent',
      workers: TEST_WORKERS,
      ...(TEST_UDP_BATCH === undefined ? {} : { 'udp-batch': TEST_UDP_BATCH }),
      ...options,
    },
    {},
  );
  const log = start.logStream ? pino({ level: config.logLevel }, start.logStream) : pino({ level: config.logLevel });
  const server = await startServer(config, log, start);
  const port = server.listening[0].port;
  const resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const adminUrl = `http://127.0.0.1:${server.admin.port}`;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(adminUrl + path, {
      ...init,
      headers: { authorization: `Bearer ${server.adminToken}`, ...(init.headers as Record<string, string>) },
    });
  return { ...server, port, resolver, adminUrl, api };
}

let nextId = 1;

/** A query as a client would send it; `fields` override the defaults. */
export function query(name: string, type: string = 'A', fields: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    id: (nextId = (nextId % 65535) + 1),
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    ...fields,
  });
}

/**
 * Sends raw bytes over UDP (from `source` when given, e.g. 127.0.0.2); resolves with the reply
 * bytes, or null after timeoutMs. A datagram from another port is not the reply: with test
 * files running side by side, another file's server can answer late to an earlier socket on
 * the same ephemeral port (seen once in CI: "the client's own ID 53224 !== 497"). The bytes
 * may be any payload (the addon's tests echo strings), so the caller checks a DNS reply's ID.
 */
export function udpAsk(port: number, bytes: Buffer, timeoutMs = 3000, host = '127.0.0.1', source?: string): Promise<Buffer | null> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  if (source !== undefined) socket.bind({ address: source, port: 0 });
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (reply: Buffer | null) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    socket.on('message', (msg, from) => {
      if (from.port === port) done(msg);
    });
    socket.on('error', () => done(null));
    socket.send(bytes, port, host);
  });
}

/** Opens a TCP connection, writes `raw` as is, and collects length-prefixed replies. */
/** `localAddress`: the client's own address (e.g. 127.0.0.2), to test per-client limits. */
export function tcpSession(port: number, host = '127.0.0.1', localAddress?: string) {
  const socket = connect({ port, host, localAddress });
  const replies: Buffer[] = [];
  const framer = new TcpFramer();
  const waiters: (() => void)[] = [];
  let closed = false;
  socket.on('data', (chunk) => {
    replies.push(...framer.push(chunk));
    waiters.splice(0).forEach((w) => w());
  });
  socket.on('error', () => {});
  const closedPromise = new Promise<void>((resolve) =>
    socket.on('close', () => {
      closed = true;
      waiters.splice(0).forEach((w) => w());
      resolve();
    }),
  );
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return {
    socket,
    replies,
    connected,
    closed: closedPromise,
    isClosed: () => closed,
    writeRaw: (raw: Buffer) => socket.write(raw),
    send: (msg: Buffer) => socket.write(Buffer.concat([lengthPrefix(msg), msg])),
    /** Resolves when `count` replies have arrived, or rejects after timeoutMs. */
    waitFor: async (count: number, timeoutMs = 3000): Promise<Buffer[]> => {
      const deadline = Date.now() + timeoutMs;
      while (replies.length < count) {
        if (closed) throw new Error(`connection closed after ${replies.length} of ${count} replies`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`got ${replies.length} of ${count} replies in ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return replies.slice(0, count);
    },
    close: () => socket.destroy(),
  };
}

export async function tcpAsk(port: number, bytes: Buffer, timeoutMs = 3000, localAddress?: string): Promise<Buffer> {
  const session = tcpSession(port, '127.0.0.1', localAddress);
  try {
    session.send(bytes);
    return (await session.waitFor(1, timeoutMs))[0];
  } finally {
    session.close();
  }
}

export function decode(bytes: Buffer | null): dnsPacket.Packet & { rcode?: string } {
  if (!bytes) throw new Error('no reply');
  return dnsPacket.decode(bytes);
}

/** The bytes with the first two (the ID) zeroed, for byte-for-byte comparisons. */
export function withoutId(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  copy.writeUInt16BE(0, 0);
  return copy;
}

let digPath: string | null | undefined;

/** The path of dig, or null when it is not installed. */
export async function findDig(): Promise<string | null> {
  if (digPath !== undefined) return digPath;
  digPath = await execChild('sh', ['-c', 'command -v dig']).then(
    ({ stdout }) => stdout.trim() || null,
    () => null,
  );
  return digPath;
}

export async function dig(port: number, args: string[]): Promise<string> {
  return (await execChild('dig', ['@127.0.0.1', '-p', String(port), '+time=3', '+tries=1', ...args])).stdout;
}

/** The reply of each worker's query path to `query` (from 127.0.0.1 over UDP), without a socket: every worker must give the same. */
export async function probeReplies(server: RunningServer, query: Buffer): Promise<(Buffer | null)[]> {
  return (await server.debug.probe(query)).map((result) => result?.reply ?? null);
}
