// Network fuzzer: the built `divert serve` (2 workers) on loopback, an upstream that
// answers, and for FUZZ_SECONDS (default 60) random, mutated and well-formed queries over
// UDP and TCP with hostile framing — while a control client checks every second that a
// well-formed query still gets the right answer over UDP and TCP. Every listener is hit:
// the DNS port (IPv4 and IPv6), the DNS UPDATE port (netfuzz-update.ts), the admin port
// (netfuzz-admin.ts), and, as root, datagrams from source port 0, the server's own ports
// and addresses outside --allow (netfuzz-sources.ts). Reports what was sent and
// answered, the server's RSS and open fds at start, middle and end, connections the
// server did not close, and whether it is still alive; exits 1 on a crash, a replaced
// worker, a failed control query, a stuck connection or an admin response over 499.
// `npm run fuzz:net` (node dist/bench/netfuzz.js); FUZZ_SEED replays a run.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { lengthPrefix, TcpFramer } from '../src/transport/tcp-framer.js';
import { DEFAULT_TCP_LIMITS } from '../src/transport/connection-slots.js';
import { readQuery } from '../src/wire/query.js';
import type { TsigKey } from '../src/update/tsig.js';
import { runDivert, type DivertProcess } from '../test/helpers/process.js';
import { RawUdp, rawUdpUnavailable, type Endpoint } from '../test/helpers/raw-udp.js';
import { fuzzAdmin, type AdminFuzzReport } from './netfuzz-admin.js';
import { sendFromEdgeSources } from './netfuzz-sources.js';
import { Rng } from './netfuzz-rng.js';

export { Rng };
import { UPDATE_KEY_NAME, updateFuzzMessage, updateKeyFile } from './netfuzz-update.js';

// ---------------------------------------------------------------------------------
// Queries: well-formed, mutated and random

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);

function wireName(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]), Buffer.from([0])]);
}

/** A query in wire form; `opt` adds an OPT record with these options ([code, data]). */
export function buildQuery(
  id: number,
  name: string,
  qtype: number,
  opt?: { payload: number; flags: number; options: [number, Buffer][] },
  qclass = 1,
  flags = 0x0100,
): Buffer {
  const header = Buffer.concat([u16(id), u16(flags), u16(1), u16(0), u16(0), u16(opt ? 1 : 0)]);
  const question = Buffer.concat([wireName(name), u16(qtype), u16(qclass)]);
  if (!opt) return Buffer.concat([header, question]);
  const rdata = Buffer.concat(opt.options.map(([code, data]) => Buffer.concat([u16(code), u16(data.length), data])));
  const fixed = Buffer.concat([
    Buffer.from([0]),
    u16(41),
    u16(opt.payload),
    Buffer.from([(opt.flags >>> 24) & 0xff, (opt.flags >>> 16) & 0xff, (opt.flags >>> 8) & 0xff, opt.flags & 0xff]),
    u16(rdata.length),
  ]);
  return Buffer.concat([header, question, fixed, rdata]);
}

const NAMES = [
  'www.fuzz.test',
  'WWW.Fuzz.Test',
  'x.cdn.fuzz.test',
  'a.b.cdn.fuzz.test',
  'shared.fuzz.test',
  'blocked.fuzz.test',
  'night.fuzz.test',
  'fwd.example',
  'slow.forward.example',
  'big.forward.example',
  'tc.forward.example',
  'fuzz.test',
  '.',
];
const TYPES = [1, 1, 1, 28, 28, 15, 16, 255, 0, 65535, 41];

function randomEcs(rng: Rng): Buffer {
  const family = rng.pick([1, 1, 2, 2, 0, 3]);
  const source = rng.chance(0.8) ? rng.int(family === 2 ? 129 : 33) : rng.int(256);
  const bytes = rng.chance(0.8) ? (source + 7) >> 3 : rng.int(18);
  return Buffer.concat([u16(family), Buffer.from([source, rng.chance(0.9) ? 0 : rng.int(256)]), rng.bytes(bytes)]);
}

export function wellFormedQuery(rng: Rng): Buffer {
  let name = rng.pick(NAMES);
  if (name === 'fwd.example' || rng.chance(0.05)) name = `r${rng.int(100000)}.${name === '.' ? 'fwd.example' : name}`;
  const withOpt = rng.chance(0.5);
  const options: [number, Buffer][] = [];
  if (withOpt && rng.chance(0.5)) options.push([8, randomEcs(rng)]);
  if (withOpt && rng.chance(0.2)) options.push([rng.pick([3, 10, 12, 65001]), rng.bytes(rng.int(12))]);
  const opt = withOpt
    ? { payload: rng.pick([0, 512, 1232, 4096, 65535]), flags: (rng.chance(0.1) ? 1 << 16 : 0) | (rng.chance(0.3) ? 0x8000 : 0), options }
    : undefined;
  const flags = rng.chance(0.05) ? rng.int(0x10000) & ~0x8000 : 0x0100;
  return buildQuery(rng.int(0x10000), name, rng.pick(TYPES), opt, rng.chance(0.05) ? rng.pick([3, 255, 254]) : 1, flags);
}

export function mutate(rng: Rng, msg: Buffer): Buffer {
  let b = Buffer.from(msg);
  for (let n = 1 + rng.int(4); n > 0; n--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(6)) {
      case 0:
        if (at < b.length) b[at] ^= 1 << rng.int(8);
        break;
      case 1:
        if (at < b.length) b[at] = rng.pick([0, 1, 0x3f, 0x40, 0xc0, 0xc0 | 12, 0xff]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(8)), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(8))]);
        break;
      case 4:
        b = b.subarray(0, at);
        break;
      default:
        if (b.length >= 12) b.writeUInt16BE(rng.pick([0, 1, 2, 0xffff]), 4 + 2 * rng.int(4));
    }
  }
  return b;
}

export function fuzzMessage(rng: Rng): Buffer {
  const roll = rng.int(10);
  if (roll < 4) return wellFormedQuery(rng);
  if (roll < 8) return mutate(rng, wellFormedQuery(rng));
  return rng.bytes(rng.int(rng.chance(0.9) ? 100 : 1500));
}

// ---------------------------------------------------------------------------------
// An upstream that answers anything readable (never decodes the rest: forwarded fuzz is
// passed on unchanged); "slow." names get no answer, "big." 100 records, "tc." a TC reply.

export interface RawUpstream {
  port: number;
  queries: number;
  close(): Promise<void>;
}

function upstreamReply(msg: Buffer): Buffer | null {
  const q = readQuery(msg);
  if (typeof q === 'string' || q.name.startsWith('slow.')) return null;
  const count = q.qtype !== 1 ? 0 : q.name.startsWith('big.') ? 100 : 1;
  const flags = 0x8080 | (q.flags & 0x0110) | (q.name.startsWith('tc.') ? 0x0200 : 0);
  const header = Buffer.concat([u16(q.id), u16(flags), u16(1), u16(count), u16(0), u16(0)]);
  const records = Array.from({ length: count }, (_, i) =>
    Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 1 + (i % 250)]),
  );
  return Buffer.concat([header, msg.subarray(12, q.questionEnd), ...records]);
}

export async function startRawUpstream(): Promise<RawUpstream> {
  for (let tries = 0; ; tries++) {
    const udp = createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    const port = udp.address().port;
    const upstream: RawUpstream = { port, queries: 0, close: async () => {} };
    const tcp: Server = createServer((socket: Socket) => {
      const framer = new TcpFramer();
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk) => {
        for (const msg of framer.push(chunk)) {
          upstream.queries++;
          const reply = upstreamReply(msg);
          if (reply && !socket.destroyed) socket.write(Buffer.concat([lengthPrefix(reply), reply]));
        }
      });
    });
    const listening = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!listening) {
      udp.close();
      if (tries >= 20) throw new Error('no port free for both UDP and TCP');
      continue;
    }
    udp.on('message', (msg, rinfo) => {
      upstream.queries++;
      const reply = upstreamReply(msg);
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
    upstream.close = async () => {
      udp.close();
      tcp.close();
    };
    return upstream;
  }
}

// ---------------------------------------------------------------------------------
// The server under test

const ZONE = `$ORIGIN fuzz.test.
$TTL 30
;divert www {"rules":[{"networks":["127.0.0.2/32"],"a":["192.0.2.99"]},{"networks":["10.0.0.0/8"],"aaaa":["2001:db8::99"]}]}
www    IN A    192.0.2.10
       IN A    192.0.2.11
       IN AAAA 2001:db8::10
*.cdn  IN A    192.0.2.30
;divert shared {"weights":{"192.0.2.40":3,"192.0.2.41":1},"pick":1}
shared IN A    192.0.2.40
       IN A    192.0.2.41
;divert blocked {"ttl":5}
;divert night {"rules":[{"from":"22:00","to":"06:00","tz":"Europe/London","a":["192.0.2.60"]}]}
night  IN A    192.0.2.50
`;

export const CONTROL_SOURCE = '127.0.0.2';
/** What the control client (CONTROL_SOURCE, matched by www's first rule) must get back. */
export const CONTROLS: { name: string; expect: string[] }[] = [
  { name: 'www.fuzz.test', expect: ['192.0.2.99'] },
  { name: 'control.fwd.example', expect: ['203.0.113.1'] },
];

export interface Target {
  port: number;
  /** The DNS listener on ::1. */
  port6: number;
  /** The DNS UPDATE port, and the key that may change the names under upd.fuzz.test. */
  update: { port: number; key: TsigKey };
  admin: { port: number; token: string };
  process: DivertProcess;
  upstream: RawUpstream;
  idleTimeoutMs: number;
  queryTimeoutMs: number;
  stop(): Promise<void>;
}

const ADMIN_TOKEN = 'netfuzz-token-0123456789abcdef';
const portOf = (hostPort: string) => Number(/:(\d+)$/.exec(hostPort)![1]);

export async function startTarget(options: { workers: number; idleTimeoutMs: number; queryTimeoutMs?: number }): Promise<Target> {
  const upstream = await startRawUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'divert-netfuzz-'));
  writeFileSync(join(dir, 'fuzz.zone'), ZONE);
  const secret = randomBytes(32);
  writeFileSync(join(dir, 'update.key'), updateKeyFile(secret), { mode: 0o600 });
  const queryTimeoutMs = options.queryTimeoutMs ?? 1000;
  const child = runDivert([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--listen',
    '[::1]:0',
    '--upstream',
    `127.0.0.1:${upstream.port}`,
    '--zones',
    join(dir, 'fuzz.zone'),
    '--workers',
    String(options.workers),
    '--tcp-idle-timeout-ms',
    String(options.idleTimeoutMs),
    '--upstream-timeout-ms',
    String(Math.min(300, queryTimeoutMs)),
    '--query-timeout-ms',
    String(queryTimeoutMs),
    '--admin-token',
    ADMIN_TOKEN,
    '--update-listen',
    '127.0.0.1:0',
    '--update-key-file',
    join(dir, 'update.key'),
    // the fuzzer's own sources and the control client; the rest of 127/8 is outside
    '--allow',
    '127.0.0.0/16',
    '--allow',
    '::1/128',
  ]);
  let line;
  try {
    line = await child.listeningLine(20_000);
  } catch (err) {
    await child.stop();
    await upstream.close();
    throw err;
  }
  return {
    port: portOf(line.listen[0]),
    port6: portOf(line.listen[1]),
    process: child,
    upstream,
    idleTimeoutMs: options.idleTimeoutMs,
    queryTimeoutMs,
    update: { port: portOf(line.update!), key: { name: UPDATE_KEY_NAME, algorithm: 'hmac-sha256', secret } },
    admin: { port: portOf(line.admin), token: ADMIN_TOKEN },
    stop: async () => {
      await child.stop();
      await upstream.close();
    },
  };
}

// ---------------------------------------------------------------------------------
// What the server holds: processes (found by ppid), RSS, fds, TCP connections

/** `root` and every process below it, by walking /proc/*\/stat's ppid. */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // the command may hold blanks and parentheses: the fields start after the last ")"
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(entry), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

export interface ProcessSample {
  pid: number;
  rssKb: number | null;
  fds: number | null;
}

export function sampleProcesses(root: number): ProcessSample[] {
  return processTree(root).map((pid) => {
    let rssKb: number | null = null;
    let fds: number | null = null;
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      rssKb = m ? Number(m[1]) : null;
      fds = readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // gone meanwhile
    }
    return { pid, rssKb, fds };
  });
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** The server side's TCP sockets on `port` by state, LISTEN and TIME_WAIT left out (the kernel's, not the server's). */
export function serverSockets(port: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      const localPort = parseInt(f[1].split(':')[1], 16);
      const state = TCP_STATES[f[3]] ?? f[3];
      if (localPort !== port || state === 'LISTEN' || state === 'TIME_WAIT') continue;
      out[state] = (out[state] ?? 0) + 1;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Control queries: must always be answered right

async function controlUdp(port: number, name: string, expect: string[], id: number): Promise<string | null> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, CONTROL_SOURCE, () => resolve());
    });
    const reply = await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 2000);
      socket.on('message', (msg) => {
        if (msg.length >= 2 && msg.readUInt16BE(0) === id) {
          clearTimeout(timer);
          resolve(msg);
        }
      });
      socket.send(buildQuery(id, name, 1), port, '127.0.0.1');
    });
    return checkControlReply(reply, name, expect, id);
  } catch (err) {
    return (err as Error).message;
  } finally {
    socket.close();
  }
}

async function controlTcp(port: number, name: string, expect: string[], id: number): Promise<string | null> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: CONTROL_SOURCE });
  const framer = new TcpFramer();
  try {
    const reply = await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 2000);
      socket.on('error', () => resolve(null));
      socket.on('data', (chunk) => {
        const [msg] = framer.push(chunk);
        if (msg) {
          clearTimeout(timer);
          resolve(msg);
        }
      });
      const q = buildQuery(id, name, 1);
      socket.write(Buffer.concat([lengthPrefix(q), q]));
    });
    return checkControlReply(reply, name, expect, id);
  } finally {
    socket.destroy();
  }
}

/** null when `reply` is the right answer, else what is wrong with it. */
function checkControlReply(reply: Buffer | null, name: string, expect: string[], id: number): string | null {
  if (!reply) return `${name}: no reply within 2000 ms`;
  if (reply.length < 12 || reply.readUInt16BE(0) !== id) return `${name}: reply with another ID`;
  const flags = reply.readUInt16BE(2);
  if (!(flags & 0x8000) || (flags & 0x0f) !== 0) return `${name}: flags ${flags.toString(16)}, not a NOERROR response`;
  const question = Buffer.concat([wireName(name), u16(1), u16(1)]);
  if (!reply.subarray(12, 12 + question.length).equals(question)) return `${name}: the question is not echoed`;
  const count = reply.readUInt16BE(6);
  const got: string[] = [];
  let pos = 12 + question.length;
  for (let i = 0; i < count; i++) {
    // owner (a pointer, or a name) then type, class, TTL, rdlength, rdata
    while (pos < reply.length && reply[pos] !== 0 && (reply[pos] & 0xc0) !== 0xc0) pos += reply[pos] + 1;
    pos += reply[pos] === 0 ? 1 : 2;
    if (pos + 10 > reply.length) return `${name}: answer ${i} runs off the reply`;
    const rdlength = reply.readUInt16BE(pos + 8);
    if (reply.readUInt16BE(pos) === 1 && rdlength === 4) got.push([...reply.subarray(pos + 10, pos + 14)].join('.'));
    pos += 10 + rdlength;
  }
  return got.join(',') === expect.join(',') ? null : `${name}: answered ${got.join(',') || 'nothing'}, expected ${expect.join(',')}`;
}

// ---------------------------------------------------------------------------------
// The fuzzer

export interface FuzzOptions {
  port: number;
  seconds: number;
  seed: number;
  /** Datagrams per second. */
  udpRate: number;
  /** TCP connections open at once (keep below --tcp-max-per-client). */
  tcpConcurrency: number;
  idleTimeoutMs: number;
  queryTimeoutMs: number;
  /** Called about once a second with the elapsed fraction (for samples). */
  onTick?: (elapsedMs: number) => void;
  /** The other listeners, when they are to be fuzzed too: a target's (startTarget). */
  target?: Pick<Target, 'port6' | 'update' | 'admin' | 'upstream'>;
  /** Datagrams a second from edge sources (port 0, the server's own ports, outside --allow), sent with raw sockets (root). */
  rawRate?: number;
}

export interface FuzzReport {
  seed: number;
  seconds: number;
  udpSent: number;
  udpReplies: number;
  /** Replies by RCODE (header bits), over UDP and TCP. */
  rcodes: Record<string, number>;
  tcpConnections: number;
  tcpRefused: number;
  tcpMessages: number;
  tcpReplies: number;
  tcpByKind: Record<string, number>;
  /** Connections the server should have closed (idle, half-closed by us) and did not, in time. */
  tcpStuck: { kind: string; waitedMs: number }[];
  controlOk: number;
  controlFailed: string[];
  /** Messages sent to the DNS UPDATE port, over UDP and TCP, and its replies. */
  updateSent: number;
  updateReplies: number;
  /** Datagrams from edge sources (raw sockets), or why there were none. */
  rawSent: number;
  rawSkipped?: string;
  admin?: AdminFuzzReport;
}

const TCP_KINDS = [
  'pipelined',
  'slow',
  'partial-length',
  'declared-big',
  'garbage',
  'idle',
  'abrupt',
  'half-close',
  'split-random',
] as const;
type TcpKind = (typeof TCP_KINDS)[number];

const framed = (msg: Buffer) => Buffer.concat([lengthPrefix(msg), msg.subarray(0, 0xffff)]);

export async function fuzzNetwork(options: FuzzOptions): Promise<FuzzReport> {
  const rng = new Rng(options.seed);
  const report: FuzzReport = {
    seed: options.seed,
    seconds: options.seconds,
    udpSent: 0,
    udpReplies: 0,
    rcodes: {},
    tcpConnections: 0,
    tcpRefused: 0,
    tcpMessages: 0,
    tcpReplies: 0,
    tcpByKind: {},
    tcpStuck: [],
    controlOk: 0,
    controlFailed: [],
    updateSent: 0,
    updateReplies: 0,
    rawSent: 0,
  };
  const countReply = (msg: Buffer) => {
    const rcode = msg.length >= 4 ? String(msg[3] & 0x0f) : 'short';
    report.rcodes[rcode] = (report.rcodes[rcode] ?? 0) + 1;
  };
  const start = Date.now();
  const deadline = start + options.seconds * 1000;
  const running = () => Date.now() < deadline;

  // UDP: a few sockets, a batch every 10 ms
  const udpSockets: UdpSocket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    s.on('message', (msg) => {
      report.udpReplies++;
      countReply(msg);
    });
    s.on('error', () => {});
    udpSockets.push(s);
  }
  const target = options.target;
  const udp6 = createSocket('udp6');
  await new Promise<void>((resolve) => udp6.bind(0, '::1', () => resolve()));
  udp6.on('message', (msg) => {
    report.udpReplies++;
    countReply(msg);
  });
  udp6.on('error', () => {});
  const updateSocket = createSocket('udp4');
  await new Promise<void>((resolve) => updateSocket.bind(0, '127.0.0.1', () => resolve()));
  updateSocket.on('message', () => report.updateReplies++);
  updateSocket.on('error', () => {});
  const updateMessage = () => updateFuzzMessage(rng, target!.update.key, mutate);

  const perTick = Math.max(1, Math.round(options.udpRate / 100));
  const udpTimer = setInterval(() => {
    if (!running()) return;
    for (let i = 0; i < perTick; i++) {
      const msg = fuzzMessage(rng);
      if (msg.length === 0) continue;
      report.udpSent++;
      if (target && i % 8 === 7) udp6.send(msg, target.port6, '::1');
      else udpSockets[i % udpSockets.length].send(msg, options.port, '127.0.0.1');
    }
    // a tenth as many to the DNS UPDATE port
    for (let i = 0; target && i < Math.max(1, perTick / 10); i++) {
      report.updateSent++;
      updateSocket.send(updateMessage(), target.update.port, '127.0.0.1');
    }
  }, 10);

  // datagrams no normal socket can send, from edge sources, to every UDP listener
  let raw: RawUdp | undefined;
  let rawTimer: NodeJS.Timeout | undefined;
  if (target && options.rawRate) {
    const unavailable = rawUdpUnavailable();
    if (unavailable) report.rawSkipped = unavailable;
    else {
      const sender = RawUdp.start();
      raw = sender;
      const listeners: Endpoint[] = [
        { address: '127.0.0.1', port: options.port },
        { address: '::1', port: target.port6 },
        { address: '127.0.0.1', port: target.update.port },
      ];
      const ports = [options.port, target.port6, target.update.port, target.admin.port, target.upstream.port];
      const rawPerTick = Math.max(1, Math.round(options.rawRate / 10));
      rawTimer = setInterval(() => {
        if (!running()) return;
        report.rawSent += sendFromEdgeSources(sender, rng, { listeners, ports }, rawPerTick, (to) =>
          to.port === target.update.port ? updateMessage() : fuzzMessage(rng),
        );
      }, 100);
    }
  }

  // TCP: a pool of conversations of random kinds
  const conversation = async (): Promise<void> => {
    const kind: TcpKind = rng.pick(TCP_KINDS);
    report.tcpConnections++;
    report.tcpByKind[kind] = (report.tcpByKind[kind] ?? 0) + 1;
    // one conversation in five, when there is one, with the DNS UPDATE port (the same framing)
    const toUpdate = target !== undefined && rng.chance(0.2);
    const socket = connect({ port: toUpdate ? target.update.port : options.port, host: '127.0.0.1' });
    const framer = new TcpFramer();
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      for (const msg of framer.push(chunk)) {
        report.tcpReplies++;
        countReply(msg);
      }
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const connected = await Promise.race([
      new Promise<boolean>((resolve) => socket.once('connect', () => resolve(true))),
      closed.then(() => false),
    ]);
    if (!connected) {
      report.tcpRefused++;
      return;
    }
    const write = (b: Buffer) => {
      if (!socket.destroyed && b.length > 0) socket.write(b);
    };
    const messages = (n: number) => Array.from({ length: n }, () => (toUpdate ? updateMessage() : fuzzMessage(rng)));
    // how long the server may take to close after our last byte: null when we close first
    let mayTakeMs: number | null;
    const afterAnswers = options.queryTimeoutMs + 1500;
    // the DNS UPDATE port keeps the default idle timeout (DEFAULT_TCP_LIMITS)
    const afterIdle = (toUpdate ? DEFAULT_TCP_LIMITS.idleTimeoutMs : options.idleTimeoutMs) + options.queryTimeoutMs + 1500;
    switch (kind) {
      case 'pipelined': {
        const batch = messages(1 + rng.int(20));
        report.tcpMessages += batch.length;
        write(Buffer.concat(batch.map(framed)));
        await sleep(rng.int(300));
        socket.end();
        mayTakeMs = afterAnswers;
        break;
      }
      case 'slow': {
        const bytes = Buffer.concat(messages(1 + rng.int(3)).map((m) => (report.tcpMessages++, framed(m))));
        for (let at = 0; at < bytes.length && running();) {
          const n = 1 + rng.int(4);
          write(bytes.subarray(at, at + n));
          at += n;
          await sleep(rng.int(Math.min(40, options.idleTimeoutMs / 4)));
        }
        socket.end();
        mayTakeMs = afterAnswers;
        break;
      }
      case 'split-random': {
        const bytes = Buffer.concat(messages(1 + rng.int(8)).map((m) => (report.tcpMessages++, framed(m))));
        for (let at = 0; at < bytes.length;) {
          const n = 1 + rng.int(bytes.length);
          write(bytes.subarray(at, at + n));
          at += n;
          if (rng.chance(0.5)) await sleep(rng.int(20));
        }
        if (rng.chance(0.5)) {
          socket.end();
          mayTakeMs = afterAnswers;
        } else {
          mayTakeMs = afterIdle; // left open after the last message: the idle timeout closes it
        }
        break;
      }
      case 'partial-length':
        write(Buffer.from([rng.int(256)]));
        mayTakeMs = afterIdle;
        break;
      case 'declared-big':
        write(Buffer.concat([Buffer.from([0xff, 0xff]), rng.bytes(rng.int(2000))]));
        mayTakeMs = afterIdle;
        break;
      case 'garbage':
        write(rng.bytes(1 + rng.int(3000)));
        if (rng.chance(0.5)) socket.end();
        mayTakeMs = afterIdle;
        break;
      case 'idle':
        mayTakeMs = afterIdle;
        break;
      case 'abrupt':
        write(framed(wellFormedQuery(rng)));
        report.tcpMessages++;
        socket.destroy();
        mayTakeMs = null;
        break;
      case 'half-close':
        report.tcpMessages++;
        write(framed(wellFormedQuery(rng)));
        socket.end();
        mayTakeMs = afterAnswers;
        break;
    }
    if (mayTakeMs === null) return;
    const since = Date.now();
    const inTime = await Promise.race([closed.then(() => true), sleep(mayTakeMs).then(() => false)]);
    if (!inTime) {
      report.tcpStuck.push({ kind, waitedMs: Date.now() - since });
      socket.destroy();
    }
  };
  const tcpWorkers = Array.from({ length: options.tcpConcurrency }, async () => {
    while (running()) await conversation();
  });

  // control: every second, each control name over UDP and TCP from CONTROL_SOURCE
  let controlId = 1;
  const control = (async () => {
    while (running()) {
      const tick = Date.now();
      const checks = CONTROLS.flatMap(({ name, expect }) => [
        controlUdp(options.port, name, expect, controlId++ & 0xffff).then((e) => e && `UDP ${e}`),
        controlTcp(options.port, name, expect, controlId++ & 0xffff).then((e) => e && `TCP ${e}`),
      ]);
      for (const failure of await Promise.all(checks)) {
        if (failure) report.controlFailed.push(`${((Date.now() - start) / 1000).toFixed(1)} s: ${failure}`);
        else report.controlOk++;
      }
      options.onTick?.(Date.now() - start);
      await sleep(Math.max(0, 1000 - (Date.now() - tick)));
    }
  })();

  const admin = target
    ? fuzzAdmin({ port: target.admin.port, token: target.admin.token, rng, concurrency: 6, running, mutate, start, end: deadline })
    : undefined;

  await Promise.all([control, ...tcpWorkers]);
  if (admin) report.admin = await admin;
  clearInterval(udpTimer);
  clearInterval(rawTimer);
  await raw?.flushed().catch(() => {});
  await raw?.close();
  await sleep(300); // the last UDP replies
  for (const s of [...udpSockets, udp6, updateSocket]) s.close();
  return report;
}

// ---------------------------------------------------------------------------------
// `npm run fuzz:net`

interface Sample {
  at: string;
  processes: ProcessSample[];
}

function formatSample({ at, processes }: Sample, primary: number): string {
  const rows = processes.map(
    (p) =>
      `${p.pid === primary ? 'primary' : 'worker '} ${p.pid}: RSS ${p.rssKb === null ? '-' : (p.rssKb / 1024).toFixed(1)} MB, fds ${p.fds ?? '-'}`,
  );
  const total = processes.reduce((n, p) => n + (p.rssKb ?? 0), 0);
  return `  ${at.padEnd(6)} total RSS ${(total / 1024).toFixed(1)} MB\n${rows.map((r) => `         ${r}`).join('\n')}`;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.FUZZ_SECONDS ?? 60);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 0x1_0000_0000);
  const idleTimeoutMs = 1000;
  const target = await startTarget({ workers: 2, idleTimeoutMs });
  const primary = target.process.child.pid!;
  await sleep(1000); // workers up and warm
  const samples: Sample[] = [{ at: 'start', processes: sampleProcesses(primary) }];
  const startPids = new Set(samples[0].processes.map((p) => p.pid));
  process.stdout.write(
    `netfuzz: divert serve on 127.0.0.1:${target.port} (pid ${primary}, ${startPids.size - 1} workers), ${seconds} s, seed ${seed}\n`,
  );
  let middleTaken = false;
  const report = await fuzzNetwork({
    port: target.port,
    seconds,
    seed,
    udpRate: Number(process.env.FUZZ_UDP_RATE ?? 3000),
    tcpConcurrency: 24,
    idleTimeoutMs,
    queryTimeoutMs: target.queryTimeoutMs,
    target,
    rawRate: Number(process.env.FUZZ_RAW_RATE ?? 300),
    onTick: (ms) => {
      if (!middleTaken && ms >= (seconds * 1000) / 2) {
        middleTaken = true;
        samples.push({ at: 'middle', processes: sampleProcesses(primary) });
      }
    },
  });
  // what the server still holds once every client is gone: nothing beyond the idle timeout
  await sleep(idleTimeoutMs + target.queryTimeoutMs + 1000);
  const sockets = serverSockets(target.port);
  samples.push({ at: 'end', processes: sampleProcesses(primary) });
  const alive = target.process.child.exitCode === null && target.process.child.signalCode === null;
  const endPids = samples[samples.length - 1].processes.map((p) => p.pid);
  const replaced = endPids.filter((pid) => !startPids.has(pid));
  const errors = (target.process.stdout() + target.process.stderr())
    .split('\n')
    .filter((l) => /"level":(50|60)/.test(l) || (/Error|uncaught/i.test(l) && !l.startsWith('{')));
  await target.stop();

  const held = Object.entries(sockets).filter(([state]) => state === 'ESTABLISHED' || state === 'CLOSE_WAIT' || state === 'SYN_RECV');
  const lines = [
    `netfuzz: ${report.seconds} s, seed ${report.seed}`,
    `  UDP: ${report.udpSent} datagrams sent (${Math.round(report.udpSent / report.seconds)}/s), ${report.udpReplies} replies`,
    `  TCP: ${report.tcpConnections} connections (${report.tcpRefused} refused), ${report.tcpMessages} messages, ${report.tcpReplies} replies; by kind ${JSON.stringify(report.tcpByKind)}`,
    `  replies by rcode: ${JSON.stringify(report.rcodes)}`,
    `  upstream got ${target.upstream.queries} queries`,
    `  DNS UPDATE port: ${report.updateSent} datagrams (${report.updateReplies} replies), and a fifth of the TCP conversations`,
    `  from edge sources (raw sockets: port 0, the server's own ports, outside --allow): ${report.rawSkipped ? `none (${report.rawSkipped})` : `${report.rawSent} datagrams`}`,
    ...(report.admin
      ? [
          `  admin port: ${report.admin.conversations} conversations ${JSON.stringify(report.admin.byKind)}`,
          `    responses by status: ${JSON.stringify(report.admin.statuses)}`,
          `    responses breaking the rules (5xx, or an error not in divert's format): ${report.admin.bad.length}${report.admin.bad.length ? `\n      ${report.admin.bad.slice(0, 10).join('\n      ')}` : ''}`,
          `    control GET /v1/names/www.fuzz.test: ${report.admin.controlOk} right, ${report.admin.controlFailed.length} wrong${report.admin.controlFailed.length ? `\n      ${report.admin.controlFailed.slice(0, 10).join('\n      ')}` : ''}`,
        ]
      : []),
    `  control queries: ${report.controlOk} right, ${report.controlFailed.length} wrong${report.controlFailed.length ? `\n    ${report.controlFailed.slice(0, 20).join('\n    ')}` : ''}`,
    `  connections not closed by the server in time: ${report.tcpStuck.length}${report.tcpStuck.length ? ` ${JSON.stringify(report.tcpStuck.slice(0, 10))}` : ''}`,
    `  server-side sockets ${idleTimeoutMs + target.queryTimeoutMs + 1000} ms after the end: ${JSON.stringify(sockets)}`,
    '  server processes (RSS, open fds):',
    ...samples.map((s) => formatSample(s, primary)),
    `  server alive at the end: ${alive ? 'yes' : 'NO'}; workers replaced during the run: ${replaced.length}`,
    `  error log lines: ${errors.length}${errors.length ? `\n    ${errors.slice(0, 5).join('\n    ')}` : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  const adminFailed =
    report.admin !== undefined && (report.admin.bad.length > 0 || report.admin.controlFailed.length > 0 || report.admin.controlOk === 0);
  const failed =
    !alive ||
    replaced.length > 0 ||
    report.controlFailed.length > 0 ||
    report.controlOk === 0 ||
    report.tcpStuck.length > 0 ||
    held.length > 0 ||
    errors.length > 0 ||
    adminFailed;
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`netfuzz: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
