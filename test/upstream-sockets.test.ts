// Forwarding over reused upstream sockets, with real sockets on loopback: a pool of
// connected UDP sockets that rotate (RFC 5452), and pipelined TCP connections (RFC 7766).
// What a user would check: every query gets its own answer however many are in flight,
// the upstream sees varied ports and IDs, forged replies are dropped and counted,
// sockets are replaced, and TCP upstreams that reorder, reset or close still answer.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { CONNECTED_ADDON_NAME, ConnectedUdp } from '../src/transport/connected-udp.js';
import { lengthPrefix, TcpFramer } from '../src/transport/tcp-framer.js';
import { DEFAULT_ADDON_PATH } from '../src/transport/udp-batch.js';
import { inspect } from '../src/debug.js';
import { Forwarder, type ForwarderOptions } from '../src/upstream/forwarder.js';
import { UpstreamPool } from '../src/upstream/upstream-pool.js';
import { readQuery } from '../src/wire/query.js';
import { skipWithoutAddon } from './helpers/addon.js';
import { decode, query, startDivert, tcpSession, udpAsk, type TestServer } from './helpers/divert.js';
import { FLAG, ipv4, rawReply, rr } from './helpers/raw.js';
import { startUpstream, type TestUpstream, type UpstreamQuery } from './helpers/upstream.js';

const A = 1,
  IN = 1;
const response = FLAG.QR | FLAG.RD | FLAG.RA;

/** The address the test upstreams give `n<i>.<anything>`: 10.0.hi(i).lo(i). */
function addressFor(i: number): string {
  return `10.0.${(i >> 8) & 255}.${i & 255}`;
}

function indexOf(name: string): number {
  return Number(/^n(\d+)\./.exec(name)![1]);
}

function answer(raw: Buffer): Buffer {
  const name = dnsPacket.decode(raw).questions![0].name;
  return rawReply(raw, { flags: response, answers: [rr(name, A, IN, 60, ipv4(addressFor(indexOf(name))))] });
}

function addressesIn(reply: Buffer | null): string[] {
  return (decode(reply).answers ?? []).map((a) => (a as { data: string }).data);
}

/** A forwarder of our own, for settings the command line does not offer. */
function forwarderOf(port: number, options: Partial<ForwarderOptions> = {}): Forwarder {
  return new Forwarder(new UpstreamPool([{ host: '127.0.0.1', port }]), { attemptTimeoutMs: 500, queryTimeoutMs: 1500, ...options });
}

/** The state of the forwarder's sockets to its one upstream (inspection hook). */
function udpSockets(forwarder: Forwarder) {
  return inspect(forwarder, forwarder.pool.upstreams[0]).udp!;
}

function tcpConnections(forwarder: Forwarder) {
  return inspect(forwarder, forwarder.pool.upstreams[0]).tcp!;
}

async function forward(forwarder: Forwarder, msg: Buffer, transport: 'udp' | 'tcp' | 'doh' = 'udp'): Promise<Buffer | null> {
  const q = readQuery(msg);
  assert.ok(typeof q !== 'string');
  return forwarder.forward(msg, q.questionEnd, transport);
}

/** Whether a UDP port on 127.0.0.1 is free, i.e. no socket of ours holds it any more. */
/**
 * Whether this process holds no UDP socket on `port` any more. Binding the port to find
 * out would fail when another process (a test run beside this one) took the port once it
 * was released, so the sockets this process holds are read from /proc: its descriptors'
 * socket inodes, matched against the local ports in /proc/net/udp and udp6.
 */
async function portIsFree(port: number): Promise<boolean> {
  const inodes = new Set<string>();
  for (const fd of await readdir('/proc/self/fd')) {
    const link = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]);
  }
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    const rows = (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1);
    for (const row of rows) {
      const fields = row.trim().split(/\s+/);
      if (fields.length > 9 && fields[1].endsWith(hexPort) && inodes.has(fields[9])) return false;
    }
  }
  return true;
}

/** Polls `check` every 20 ms until it holds or `timeoutMs` passes. */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(20);
  }
  return check();
}

describe('UDP: a pool of connected upstream sockets', () => {
  let upstream: TestUpstream;
  let divert: TestServer;
  const respond = async (q: UpstreamQuery) => {
    await sleep(Math.floor(Math.random() * 20)); // replies come back in another order
    return answer(q.raw);
  };

  before(async () => {
    upstream = await startUpstream(respond);
    divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`], 'upstream-timeout-ms': '2000', 'query-timeout-ms': '4000' });
  });
  after(async () => {
    await divert.close();
    await upstream.close();
  });

  test('500 queries in flight at once each get their own answer', async () => {
    const asked = Array.from({ length: 500 }, (_, i) => query(`n${i}.many.test`));
    const replies = await Promise.all(asked.map((msg) => udpAsk(divert.port, msg, 5000)));
    replies.forEach((reply, i) => {
      assert.ok(reply, `a reply to query ${i}`);
      assert.equal(reply.readUInt16BE(0), asked[i].readUInt16BE(0), "the client's own ID");
      assert.deepEqual(addressesIn(reply), [addressFor(i)], `the answer to n${i}`);
    });
  });

  test("queries one at a time leave from many source ports, a burst from a port drawn for it, none with the client's ID", async () => {
    const from = upstream.queries.length;
    const single = Array.from({ length: 100 }, (_, i) => query(`n${i}.ports.test`));
    for (const msg of single) assert.ok(await udpAsk(divert.port, msg));
    const alone = upstream.queries.slice(from);
    assert.equal(alone.length, 100);
    const ports = new Set(alone.map((q) => q.from.port));
    assert.ok(ports.size >= 35, `${ports.size} distinct source ports over 100 queries one at a time (64 slots)`);

    // queries that come together go up together (one sendmmsg on the addon's sockets): each
    // burst's socket is drawn at random, and every query in it has an ID of its own
    const burstPorts = new Set<number>();
    const bursts: Buffer[][] = [];
    for (let b = 0; b < 12; b++) {
      const at = upstream.queries.length;
      const burst = Array.from({ length: 20 }, (_, i) => query(`n${i}.burst${b}.test`));
      bursts.push(burst);
      const replies = await Promise.all(burst.map((msg) => udpAsk(divert.port, msg)));
      replies.forEach((reply, i) => assert.deepEqual(addressesIn(reply), [addressFor(i)], `burst ${b}, n${i}`));
      const seen = upstream.queries.slice(at);
      for (const q of seen) burstPorts.add(q.from.port);
      for (const port of new Set(seen.map((q) => q.from.port))) {
        const ids = seen.filter((q) => q.from.port === port).map((q) => q.packet.id);
        assert.equal(new Set(ids).size, ids.length, `burst ${b}: IDs on port ${port} are distinct`);
      }
    }
    assert.ok(burstPorts.size >= 6, `${burstPorts.size} distinct source ports over 12 bursts`);

    const seen = upstream.queries.slice(from);
    assert.equal(seen.length, 100 + 12 * 20);
    const asked = [single, ...bursts].flat();
    const clientIds = new Map(asked.map((msg) => [dnsPacket.decode(msg).questions![0].name, msg.readUInt16BE(0)]));
    const sameId = seen.filter((q) => q.packet.id === clientIds.get(q.packet.questions![0].name)).length;
    assert.ok(sameId <= 3, `${sameId} of ${seen.length} went up with the client's ID`);
    assert.ok(new Set(seen.map((q) => q.packet.id)).size >= seen.length - 10, 'IDs drawn at random');
  });

  test("forged replies on the socket's port are dropped and counted; the real answer arrives", async () => {
    const rejectedBefore = (await divert.stats()).rejectedReplies;
    upstream.respond = async (q) => {
      const forged = (id: number, name: string) => {
        const bytes = rawReply(query(name), { flags: response, answers: [rr(name, A, IN, 60, ipv4('6.6.6.6'))] });
        bytes.writeUInt16BE(id, 0);
        return bytes;
      };
      upstream.sendFromUpstreamPort(forged((q.packet.id! + 1) & 0xffff, 'n7.victim.test'), q.from); // wrong ID
      upstream.sendFromUpstreamPort(forged(q.packet.id!, 'n8.victim.test'), q.from); // wrong question
      // right ID and question from another port: the connected socket never sees it
      await upstream.sendFromOtherPort(forged(q.packet.id!, 'n7.victim.test'), q.from);
      await sleep(50);
      return answer(q.raw);
    };
    try {
      const reply = await udpAsk(divert.port, query('n7.victim.test'));
      assert.deepEqual(addressesIn(reply), [addressFor(7)]);
      assert.equal((await divert.stats()).rejectedReplies - rejectedBefore, 2, 'the wrong ID and the wrong question');
    } finally {
      upstream.respond = respond;
    }
  });
});

describe('--upstream-sockets', () => {
  test('with 4, 100 forwarded queries leave from at most 4 ports, each with an ID of its own', async () => {
    const upstream = await startUpstream((q) => answer(q.raw));
    const divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`], 'upstream-sockets': '4', workers: '1' });
    try {
      const asked = Array.from({ length: 100 }, (_, i) => query(`n${i}.few.test`));
      for (let i = 0; i < asked.length; i += 10) {
        const replies = await Promise.all(asked.slice(i, i + 10).map((msg) => udpAsk(divert.port, msg)));
        replies.forEach((reply, j) => assert.deepEqual(addressesIn(reply), [addressFor(i + j)]));
      }
      const ports = new Set(upstream.queries.map((q) => q.from.port));
      assert.equal(upstream.queries.length, 100);
      assert.ok(ports.size >= 2 && ports.size <= 4, `${ports.size} source ports`);
    } finally {
      await divert.close();
      await upstream.close();
    }
  });

  test('a value out of range is refused at start, naming the flag', async () => {
    await assert.rejects(startDivert({ upstream: ['127.0.0.1:9'], 'upstream-sockets': '0' }), /upstream-sockets/);
  });
});

// the pool's sockets are node:dgram's, or the native addon's (--udp-batch): each test runs on both
const native = ConnectedUdp.load(join(dirname(DEFAULT_ADDON_PATH), CONNECTED_ADDON_NAME));
const noAddon = skipWithoutAddon(native);

for (const kind of ['node:dgram', 'native'] as const) {
  const skip = kind === 'native' ? noAddon : false;
  /** A forwarder of our own, its UDP sockets of `kind`. */
  function forwarderTo(port: number, options: Partial<ForwarderOptions> = {}): Forwarder {
    return forwarderOf(port, { ...options, udp: { ...options.udp, native: kind === 'native' ? native : null } });
  }

  describe(`UDP on ${kind} sockets: rotation, failure and close`, { skip }, () => {
    test('a socket is retired after N queries and closed; new ports replace it', async () => {
      const upstream = await startUpstream((q) => answer(q.raw));
      const forwarder = forwarderTo(upstream.port, { udp: { sockets: 4, queriesPerSocket: 10 } });
      try {
        // the kernel may give a closed socket's port to a later one: a socket is a port and
        // how many times that port had been seen to close before (read after every query)
        const closes = new Map<number, number>();
        const lifeAt: number[] = [];
        let open = new Set<number>();
        for (let i = 0; i < 200; i++) {
          assert.deepEqual(addressesIn(await forward(forwarder, query(`n${i}.rotate.test`))), [addressFor(i)]);
          const port = upstream.queries[i].from.port;
          lifeAt.push(closes.get(port) ?? 0);
          const now = new Set(udpSockets(forwarder).ports);
          for (const p of open) if (!now.has(p)) closes.set(p, (closes.get(p) ?? 0) + 1);
          open = now;
        }
        const perSocket = new Map<string, number>();
        upstream.queries.forEach((q, i) =>
          perSocket.set(`${q.from.port}/${lifeAt[i]}`, (perSocket.get(`${q.from.port}/${lifeAt[i]}`) ?? 0) + 1),
        );
        const perPort = new Set(upstream.queries.map((q) => q.from.port));
        assert.ok(perSocket.size >= 20, `${perSocket.size} sockets for 200 queries at 10 per socket`);
        const most = Math.max(...perSocket.values());
        assert.ok(most <= 10, `a socket carried ${most} queries`);
        const sockets = udpSockets(forwarder);
        assert.ok(sockets.open <= 4, `${sockets.open} sockets open (4 slots)`);
        assert.equal(sockets.opened - sockets.closed, sockets.open);
        const lastPorts = new Set(upstream.queries.slice(-40).map((q) => q.from.port));
        const retired = [...perPort].filter((p) => !lastPorts.has(p));
        const free = await Promise.all(retired.map(portIsFree));
        assert.ok(free.every(Boolean), 'every retired port was released');
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test('a socket is retired after its lifetime even when idle, and the pool then holds nothing open', async () => {
      const upstream = await startUpstream((q) => answer(q.raw));
      const forwarder = forwarderTo(upstream.port, { udp: { sockets: 2, socketLifetimeMs: 200 } });
      try {
        for (let i = 0; i < 10; i++) await forward(forwarder, query(`n${i}.age.test`));
        const first = new Set(upstream.queries.map((q) => q.from.port));
        assert.ok(await eventually(() => udpSockets(forwarder).open === 0), 'idle sockets closed after their lifetime');
        for (let i = 0; i < 10; i++) await forward(forwarder, query(`n${i}.age.test`));
        const later = upstream.queries.slice(10).map((q) => q.from.port);
        assert.ok(
          later.every((p) => !first.has(p)),
          'new sockets on new ports',
        );
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test('an upstream port that is closed fails the query at once (ICMP), not at the timeout', async () => {
      // port 9 (discard): below the ephemeral range, so no socket of a parallel test can be bound
      // to it, as one could to a just-closed random port (then no ICMP comes, and this waits)
      const forwarder = forwarderTo(9, { attemptTimeoutMs: 2000, queryTimeoutMs: 3000 });
      try {
        for (let i = 0; i < 5; i++) {
          const started = Date.now();
          assert.equal(await forward(forwarder, query(`n${i}.refused.test`)), null);
          assert.ok(Date.now() - started < 1000, `failed after ${Date.now() - started} ms`);
        }
        assert.ok(await eventually(() => udpSockets(forwarder).open === 0), 'the failed sockets were closed');
      } finally {
        forwarder.close();
      }
    });

    test("a turn's queries go up together: on the addon's sockets from one port drawn for the turn, each with an ID of its own", async () => {
      const upstream = await startUpstream((q) => answer(q.raw));
      const forwarder = forwarderTo(upstream.port);
      try {
        const msgs = Array.from({ length: 20 }, (_, i) => query(`n${i}.turn.test`));
        const replies = await Promise.all(msgs.map((m) => forward(forwarder, m)));
        assert.deepEqual(
          replies.map(addressesIn),
          msgs.map((_, i) => [addressFor(i)]),
        );
        const ports = new Set(upstream.queries.map((q) => q.from.port));
        if (kind === 'native') assert.equal(ports.size, 1, `one sendmmsg, one port: ${[...ports].join(', ')}`);
        else assert.ok(ports.size >= 5, `node:dgram: a new socket connects after its turn, so each query drew a slot, ${ports.size} ports`);
        assert.equal(new Set(upstream.queries.map((q) => q.packet.id)).size, 20, 'IDs of their own');
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test('DoH queries go up together at the end of the loop turn: each answered; closed before then, none goes up and each fails', async () => {
      const upstream = await startUpstream((q) => answer(q.raw));
      const forwarder = forwarderTo(upstream.port);
      try {
        const msgs = Array.from({ length: 20 }, (_, i) => query(`n${i}.together.test`));
        const pending = msgs.map((m) => forward(forwarder, m, 'doh'));
        const sentBefore = msgs.map((m) => Buffer.from(m));
        const replies = await Promise.all(pending);
        assert.deepEqual(
          replies.map(addressesIn),
          msgs.map((_, i) => [addressFor(i)]),
        );
        assert.deepEqual(msgs, sentBefore, "the callers' buffers, IDs and all");
        assert.equal(upstream.queries.length, 20);

        const closing = forwarderTo(upstream.port);
        const failed = [0, 1, 2].map((i) => forward(closing, query(`n${i}.closed.test`), 'doh'));
        closing.close();
        assert.deepEqual(await Promise.all(failed), [null, null, null]);
        await sleep(100);
        assert.equal(upstream.queries.length, 20, 'nothing sent after the close');
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test("hedged attempts go up under IDs of their own, and the caller's query is left as it was", async () => {
      // silent to the first two attempts: the third, 100 ms apart, is answered
      const upstream = await startUpstream((q) => (upstream.queries.length < 3 ? null : answer(q.raw)));
      const forwarder = forwarderTo(upstream.port, { attemptTimeoutMs: 100, queryTimeoutMs: 1500 });
      try {
        const msg = query('n7.hedge.test');
        const before = Buffer.from(msg);
        assert.deepEqual(addressesIn(await forward(forwarder, msg)), [addressFor(7)]);
        assert.deepEqual(msg, before, "the caller's buffer, ID and all");
        const ids = upstream.queries.map((q) => q.raw.readUInt16BE(0));
        assert.equal(ids.length, 3);
        assert.equal(new Set([...ids, msg.readUInt16BE(0)]).size, 4, `upstream IDs ${ids.join(', ')}; the client's ${msg.readUInt16BE(0)}`);
        for (const q of upstream.queries) assert.deepEqual(q.raw.subarray(2), msg.subarray(2), 'the query itself, unchanged');
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test('a query given up on leaves nothing in flight, and its late reply is not counted as forged', async () => {
      const upstream = await startUpstream(async (q) => {
        await sleep(300);
        return answer(q.raw);
      });
      const forwarder = forwarderTo(upstream.port, { attemptTimeoutMs: 100, queryTimeoutMs: 150 });
      try {
        assert.equal(await forward(forwarder, query('n1.late.test')), null, 'timed out');
        assert.equal(udpSockets(forwarder).inFlight, 0, 'the cancelled attempts left nothing in flight');
        assert.ok(await eventually(() => upstream.sent.length === upstream.queries.length), 'the upstream answered late');
        await sleep(50);
        assert.equal(forwarder.stats.rejectedReplies, 0);
      } finally {
        forwarder.close();
        await upstream.close();
      }
    });

    test('close() releases every socket and fails what is in flight', async () => {
      const upstream = await startUpstream(() => null);
      const forwarder = forwarderTo(upstream.port, { attemptTimeoutMs: 5000, queryTimeoutMs: 5000 });
      try {
        const pending = Array.from({ length: 20 }, (_, i) => forward(forwarder, query(`n${i}.close.test`)));
        assert.ok(await eventually(() => upstream.queries.length === 20));
        const ports = [...new Set(upstream.queries.map((q) => q.from.port))];
        const started = Date.now();
        forwarder.close();
        assert.deepEqual(await Promise.all(pending), Array(20).fill(null));
        assert.ok(Date.now() - started < 1000, 'failed at once');
        assert.ok(await eventually(async () => (await Promise.all(ports.map(portIsFree))).every(Boolean)), 'every port released');
        assert.equal(await forward(forwarder, query('n1.after.test')), null, 'nothing is sent after close');
      } finally {
        await upstream.close();
      }
    });

    test('a reply larger than 4096 bytes arrives whole, and the sockets are of the kind asked for', async () => {
      const big = (raw: Buffer) => {
        const name = dnsPacket.decode(raw).questions![0].name;
        const answers = Array.from({ length: 400 }, (_, i) => rr(name, A, IN, 60, ipv4(addressFor(i))));
        return rawReply(raw, { flags: response, answers });
      };
      const upstream = await startUpstream((q) => big(q.raw));
      const forwarder = forwarderTo(upstream.port);
      const before = native?.open ?? 0;
      try {
        const reply = await forward(forwarder, query('n1.big.test'));
        assert.ok(reply && reply.length > 6000, `a reply of ${reply?.length} bytes`);
        assert.equal(addressesIn(reply).length, 400);
        assert.equal(udpSockets(forwarder).open, 1);
        assert.equal((native?.open ?? 0) - before, kind === 'native' ? 1 : 0, "the addon's sockets open for this forwarder");
      } finally {
        forwarder.close();
        await upstream.close();
      }
      assert.equal(native?.open ?? 0, before, 'closed with the forwarder');
    });
  });
}

type Behaviour = (socket: Socket, raw: Buffer, nth: number, reply: (bytes: Buffer) => void) => void;

interface TcpUpstream {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  queries: number;
  close(): Promise<void>;
}

/** A DNS-over-TCP upstream whose handling of the nth query on a connection is scripted. */
async function startTcpUpstream(behave: Behaviour): Promise<TcpUpstream> {
  const sockets = new Set<Socket>();
  const state: TcpUpstream = { port: 0, connections: 0, queries: 0, close: async () => {} };
  const server: Server = createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const framer = new TcpFramer();
    let nth = 0;
    const reply = (bytes: Buffer) => {
      if (!socket.destroyed && socket.writable) socket.write(Buffer.concat([lengthPrefix(bytes), bytes]));
    };
    socket.on('data', (chunk) => {
      for (const raw of framer.push(chunk)) {
        state.queries++;
        behave(socket, Buffer.from(raw), nth++, reply);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as { port: number }).port;
  state.close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}

/** Sends `count` queries n0..n<count-1>.<zone> pipelined in one write and waits for every reply. */
async function pipelined(port: number, zone: string, count: number, timeoutMs: number): Promise<Map<number, Buffer>> {
  const session = tcpSession(port);
  try {
    const asked = Array.from({ length: count }, (_, i) => query(`n${i}.${zone}`));
    await session.connected;
    session.writeRaw(Buffer.concat(asked.flatMap((msg) => [lengthPrefix(msg), msg])));
    const replies = await session.waitFor(count, timeoutMs);
    const byIndex = new Map<number, Buffer>();
    for (const reply of replies) {
      const i = asked.findIndex((msg) => msg.readUInt16BE(0) === reply.readUInt16BE(0));
      assert.ok(i >= 0, 'a reply to a query asked');
      byIndex.set(i, reply);
    }
    assert.equal(byIndex.size, count, 'one reply per query');
    return byIndex;
  } finally {
    session.close();
  }
}

describe('TCP: pipelined upstream connections', () => {
  test('200 pipelined queries go up over a few connections, and replies sent in reverse order find their queries', async () => {
    // holds each connection's queries for 10 ms, then answers them last first
    const upstream = await startTcpUpstream(
      (() => {
        const held = new Map<Socket, Buffer[]>();
        return (socket, raw, _nth, reply) => {
          const batch = held.get(socket);
          if (batch) return void batch.push(raw);
          held.set(socket, [raw]);
          setTimeout(() => {
            const all = held.get(socket)!;
            held.delete(socket);
            for (const q of all.reverse()) reply(answer(q));
          }, 10);
        };
      })(),
    );
    const divert = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      'upstream-timeout-ms': '2000',
      'query-timeout-ms': '4000',
    });
    try {
      const replies = await pipelined(divert.port, 'pipe.test', 200, 5000);
      for (const [i, reply] of replies) assert.deepEqual(addressesIn(reply), [addressFor(i)], `the answer to n${i}`);
      assert.equal(upstream.queries, 200, 'each query went up once');
      assert.ok(upstream.connections <= 4, `${upstream.connections} upstream connections`);
      // and they stay open for the next client
      const before = upstream.connections;
      await pipelined(divert.port, 'again.test', 20, 3000);
      assert.equal(upstream.connections, before, 'the connections were reused');
    } finally {
      await divert.close();
      await upstream.close();
    }
  });

  test('an upstream that closes after each reply still answers everything', async () => {
    const upstream = await startTcpUpstream((socket, raw, nth, reply) => {
      if (nth > 0) return; // it reads no further
      reply(answer(raw));
      socket.end();
    });
    const divert = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      'upstream-timeout-ms': '2000',
      'query-timeout-ms': '4000',
    });
    try {
      for (let round = 0; round < 3; round++) {
        const replies = await pipelined(divert.port, `r${round}.closing.test`, 30, 5000);
        for (const [i, reply] of replies) assert.deepEqual(addressesIn(reply), [addressFor(i)], `round ${round}: the answer to n${i}`);
      }
      for (let i = 0; i < 5; i++) {
        const replies = await pipelined(divert.port, `one${i}.closing.test`, 1, 3000);
        assert.deepEqual(addressesIn(replies.get(0)!), [addressFor(0)]);
      }
    } finally {
      await divert.close();
      await upstream.close();
    }
  });

  test('an upstream that resets connections mid-flight: every query gets its answer or SERVFAIL within the query timeout', async (t) => {
    // answers a connection's nth query (n+1)·5 ms after it came and resets the connection
    // 60 ms after accepting it, so some of its queries are answered and the rest are not;
    // every fourth connection is reset on its first query instead, answering nothing
    let accepted = 0;
    const upstream = await startTcpUpstream(
      (() => {
        const kind = new Map<Socket, number>();
        return (socket, raw, nth, reply) => {
          if (!kind.has(socket)) {
            kind.set(socket, accepted++);
            if (kind.get(socket)! % 4 !== 3) setTimeout(() => socket.resetAndDestroy(), 60);
          }
          if (kind.get(socket)! % 4 === 3) return void socket.resetAndDestroy();
          setTimeout(() => reply(answer(raw)), (nth + 1) * 5);
        };
      })(),
    );
    const divert = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      'upstream-timeout-ms': '500',
      'query-timeout-ms': '1500',
    });
    try {
      const started = Date.now();
      const replies = await pipelined(divert.port, 'reset.test', 100, 3000);
      assert.ok(Date.now() - started < 2500, `all replies after ${Date.now() - started} ms`);
      let answered = 0;
      for (const [i, reply] of replies) {
        const got = decode(reply);
        if (got.rcode === 'SERVFAIL') continue;
        assert.deepEqual(addressesIn(reply), [addressFor(i)], `the answer to n${i}`);
        answered++;
      }
      t.diagnostic(`${answered} of 100 answered, the rest SERVFAIL; ${upstream.connections} connections`);
      assert.ok(answered >= 50, `${answered} of 100 answered, the rest SERVFAIL`);
    } finally {
      await divert.close();
      await upstream.close();
    }
  });

  test('idle connections are closed, and a refused upstream fails at once', async () => {
    let closedByDivert = 0;
    const upstream = await startTcpUpstream((socket, raw, nth, reply) => {
      if (nth === 0) socket.on('end', () => closedByDivert++);
      reply(answer(raw));
    });
    const forwarder = forwarderOf(upstream.port, { tcp: { idleTimeoutMs: 200 } });
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => forward(forwarder, query(`n${i}.idle.test`), 'tcp')));
      replies.forEach((reply, i) => assert.deepEqual(addressesIn(reply), [addressFor(i)]));
      assert.ok(tcpConnections(forwarder).open >= 1);
      assert.ok(
        await eventually(() => tcpConnections(forwarder).open === 0 && closedByDivert === upstream.connections),
        'closed when idle',
      );
      await upstream.close();
      const started = Date.now();
      assert.equal(await forward(forwarder, query('n1.gone.test'), 'tcp'), null);
      assert.ok(Date.now() - started < 400, `refused after ${Date.now() - started} ms`);
    } finally {
      forwarder.close();
      await upstream.close();
    }
  });
});
