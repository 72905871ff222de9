// --udp-batch: client UDP through divert's native addon (recvmmsg/sendmmsg). The socket
// alone keeps the dgram listener's promises (a copy per message, replies now and later,
// faults counted, port 0 dropped, IPv6, close), and keeps replies that find the send buffer
// full until it has room (a build of the addon whose sendmmsg says so on demand, as
// loopback never does); divert serve answers on it in one process
// and in each of two workers (one socket the primary binds, which every worker reads,
// a stalled one or a new one alike); without the addon it falls back to node:dgram with a
// warning. DIVERT_TEST_UDP_BATCH=1 runs other suites on it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, Socket } from 'node:dgram';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { on, once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { emptyListenerCounts, listenerReport } from '../src/transport/listener-events.js';
import { BatchUdpSocket, loadUdpBatch, type UdpBatchAddon } from '../src/transport/udp-batch.js';
import { compileAddon } from '../src/native/build.js';
import type { Handler } from '../src/transport/handler.js';
import { skipWithoutAddon } from './helpers/addon.js';
import { decode, query, startDivert, udpAsk, withoutId, type TestServer } from './helpers/divert.js';
import { ROOT, runDivert, workersOf, type DivertProcess } from './helpers/process.js';
import { RawUdp, rawUdpUnavailable } from './helpers/raw-udp.js';
import { tempFiles } from './helpers/temp-files.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { parseMetrics, sumOf } from './helpers/metrics.js';

const addon = loadUdpBatch();
const noAddon = skipWithoutAddon(addon);

/** Sends each of `messages` from a socket of its own, all at once; resolves with the replies in order (null: none in time). */
function askAll(port: number, messages: Buffer[], host = '127.0.0.1'): Promise<(Buffer | null)[]> {
  return Promise.all(messages.map((m) => udpAsk(port, m, 5000, host)));
}

function nameOf(reply: Buffer | null): string {
  return decode(reply).questions![0].name;
}

describe('the batched socket', { skip: noAddon }, () => {
  const counts = emptyListenerCounts();
  const report = listenerReport(() => {}, counts);
  let accepting = true;
  let handler: Handler = () => null;
  let v4: BatchUdpSocket;
  let v6: BatchUdpSocket;

  before(() => {
    v4 = BatchUdpSocket.open(addon!, '127.0.0.1', 0);
    v6 = BatchUdpSocket.open(addon!, '::1', 0);
    for (const socket of [v4, v6])
      socket.serve(
        (msg, client) => handler(msg, client),
        report,
        () => accepting,
      );
  });
  after(() => {
    v4?.close();
    v6?.close();
  });

  test('replies given at once and later (a promise) both go back, each to its own client, over IPv4 and IPv6', async () => {
    const seen: string[] = [];
    handler = (msg, client) => {
      seen.push(client.address);
      const reply = Buffer.concat([Buffer.from('re:'), msg]);
      return msg[0] === 0x61 ? reply : sleep(Math.random() * 20).then(() => reply);
    };
    const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`${i % 2 ? 'a' : 'b'}-${i}`));
    const replies = await askAll(v4.port, messages);
    assert.deepEqual(
      replies.map((r) => r?.toString()),
      messages.map((m) => `re:${m.toString()}`),
    );
    const six = await udpAsk(v6.port, Buffer.from('a-six'), 3000, '::1');
    assert.equal(six?.toString(), 're:a-six');
    assert.ok(seen.includes('127.0.0.1') && seen.includes('::1'), 'the client address is given as text');
  });

  test('each message is a copy: the ones kept from earlier batches are intact', async () => {
    const kept: Buffer[] = [];
    handler = (msg) => {
      kept.push(msg);
      return msg;
    };
    const messages = Array.from({ length: 300 }, (_, i) => Buffer.from(`kept-${i}-${'x'.repeat(i % 50)}`));
    await askAll(v4.port, messages);
    assert.deepEqual(kept.map(String).sort(), messages.map(String).sort());
  });

  test('a reply larger than a slot goes out whole', async () => {
    handler = () => Buffer.alloc(9000, 7);
    assert.equal((await udpAsk(v4.port, Buffer.from('big')))?.length, 9000);
    handler = () => Promise.resolve(Buffer.alloc(6000, 8));
    assert.equal((await udpAsk(v4.port, Buffer.from('big later')))?.length, 6000);
  });

  test('a handler that throws or rejects costs its message, counted; no reply and null are silent', async () => {
    const before = counts.handler_error;
    handler = (msg) => {
      if (msg.toString() === 'throw') throw new Error('boom');
      if (msg.toString() === 'reject') return Promise.reject(new Error('boom later'));
      return msg.toString() === 'null' ? null : Promise.resolve(null);
    };
    const replies = await Promise.all(['throw', 'reject', 'null', 'later null'].map((m) => udpAsk(v4.port, Buffer.from(m), 300)));
    assert.deepEqual(replies, [null, null, null, null]);
    assert.equal(counts.handler_error - before, 2);
    handler = (msg) => msg;
    assert.equal((await udpAsk(v4.port, Buffer.from('still here')))?.toString(), 'still here');
  });

  test('while not accepting, datagrams are dropped without reaching the handler', async () => {
    let calls = 0;
    handler = (msg) => {
      calls++;
      return msg;
    };
    accepting = false;
    try {
      assert.equal(await udpAsk(v4.port, Buffer.from('dropped'), 300), null);
    } finally {
      accepting = true;
    }
    assert.equal(calls, 0);
  });

  test('a datagram from source port 0 is dropped and counted', { skip: rawUdpUnavailable() }, async () => {
    let calls = 0;
    handler = (msg) => {
      calls++;
      return msg;
    };
    const raw = RawUdp.start();
    try {
      raw.send({ address: '127.0.0.1', port: 0 }, { address: '127.0.0.1', port: v4.port }, query('zero.example'));
      raw.send({ address: '::1', port: 0 }, { address: '::1', port: v6.port }, query('zero.example'));
      await raw.flushed();
    } finally {
      await raw.close();
    }
    await sleep(200);
    assert.equal(counts.unreplyable_source, 2);
    assert.equal(calls, 0);
  });

  test('a reply that comes after close is counted as a send error, and nothing crashes', async () => {
    const socket = BatchUdpSocket.open(addon!, '127.0.0.1', 0);
    let release!: () => void;
    const pending = new Promise<void>((resolve) => (release = resolve));
    socket.serve(
      () => pending.then(() => Buffer.from('too late')),
      report,
      () => true,
    );
    const asked = udpAsk(socket.port, Buffer.from('q'), 300);
    await sleep(100);
    const before = counts.send_error;
    socket.close();
    socket.close();
    release();
    assert.equal(await asked, null);
    assert.equal(counts.send_error - before, 1);
  });

  test('a port is bound once: a second socket on it is refused', () => {
    const first = BatchUdpSocket.open(addon!, '127.0.0.1', 0);
    try {
      assert.throws(() => BatchUdpSocket.open(addon!, '127.0.0.1', first.port), { code: 'EADDRINUSE' });
    } finally {
      first.close();
    }
  });

  test('adopt refuses a descriptor that is not a UDP socket, naming it', async () => {
    const file = openSync(process.execPath, 'r');
    try {
      assert.throws(() => BatchUdpSocket.adopt(addon!, file), { code: 'ENOTSOCK', message: new RegExp(`descriptor ${file} `) });
    } finally {
      closeSync(file);
    }
    assert.throws(() => BatchUdpSocket.adopt(addon!, file), { code: 'EBADF' });
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    try {
      const fd = (tcp as unknown as { _handle: { fd: number } })._handle.fd;
      assert.throws(() => BatchUdpSocket.adopt(addon!, fd), { code: 'ENOTSOCK', message: /is not a UDP socket \(SO_TYPE 1,/ });
    } finally {
      tcp.close();
    }
  });
});

// Each process adopts the socket (as a cluster worker does) and echoes; asked, it tells how
// many times its main thread slept and woke (voluntary context switches).
const SHARER = `
import { readFileSync } from 'node:fs';
const switches = () => Number(/voluntary_ctxt_switches:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
import { BatchUdpSocket, loadUdpBatch } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'transport', 'udp-batch.js'))};
const socket = BatchUdpSocket.adopt(loadUdpBatch(process.env.ADDON || undefined), 4);
socket.serve((msg) => msg, { counts: {}, fault() {} }, () => true);
process.on('message', () => process.send(switches(), () => process.exit(0)));
process.send('ready');
`;

describe('two processes reading one socket', { skip: noAddon }, () => {
  let shared: BatchUdpSocket;
  const sharers: ChildProcess[] = [];
  let client: Socket;

  before(async () => {
    shared = BatchUdpSocket.open(addon!, '127.0.0.1', 0);
    for (let i = 0; i < 2; i++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', SHARER], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', shared.fd],
        env: { ...process.env, ADDON: process.env.DIVERT_UDP_BATCH_ADDON ?? '' },
      });
      sharers.push(child);
      const exited = once(child, 'exit').then(([code]) =>
        assert.fail(`a reading process ended (exit ${String(code)}) before it was ready`),
      );
      await Promise.race([once(child, 'message'), exited]);
    }
    client = createSocket('udp4');
  });
  after(() => {
    for (const child of sharers) child.kill('SIGKILL');
    client?.close();
    shared?.close();
  });

  // libuv registers the socket in each process's epoll without EPOLLEXCLUSIVE: every
  // datagram woke both processes (each slept again at once, or found nothing to read), so
  // an idle pair cost two wake-ups per query; the count is each one's voluntary context switches
  test('each datagram wakes one of them: 200 queries one at a time cost about 200 wake-ups, not 400', async () => {
    const replies = (async function* () {
      for await (const [msg] of on(client, 'message')) yield msg as Buffer;
    })();
    for (let i = 0; i < 200; i++) {
      client.send(Buffer.from(`q${i}`), shared.port, '127.0.0.1');
      const { value } = await Promise.race([replies.next(), sleep(2000).then(() => ({ value: null }))]);
      assert.equal(value?.toString(), `q${i}`, `the echo of query ${i}`);
      await sleep(1); // both idle again, waiting in epoll_wait
    }
    const each: number[] = [];
    for (const child of sharers) {
      child.send('switches');
      each.push(((await once(child, 'message')) as [number])[0]);
    }
    assert.ok(
      each[0] + each[1] < 300,
      `wake-ups of the two (voluntary context switches), about 400 when both wake for each: ${each.join(' + ')}`,
    );
  });
});

describe('a full send buffer', { skip: noAddon }, () => {
  // the addon built with test/native/full-send-buffer.h: its sendmmsg finds the buffer full while FULL is set
  const FULL = 'UDP_BATCH_TEST_SEND_FULL';
  let full: UdpBatchAddon;
  const counts = emptyListenerCounts();
  const report = listenerReport(() => {}, counts);
  const echo = (msg: Buffer) => Buffer.concat([Buffer.from('re:'), msg]);
  const messages = (n: number, tag: string) => Array.from({ length: n }, (_, i) => Buffer.from(`${tag}-${i}`));

  before(() => {
    const output = join(mkdtempSync(join(tmpdir(), 'divert-full-send-')), 'udp-batch.node');
    assert.equal(compileAddon('udp-batch', output, ['-include', join(ROOT, 'test', 'native', 'full-send-buffer.h')]), null);
    full = loadUdpBatch(output)!;
  });
  after(() => delete process.env[FULL]);

  test('replies wait for room instead of being dropped, and all go out once there is room', async () => {
    const socket = BatchUdpSocket.open(full, '127.0.0.1', 0);
    socket.serve(echo, report, () => true);
    try {
      process.env[FULL] = '1';
      const sent = messages(100, 'wait');
      let arrived = 0;
      const replies = Promise.all(sent.map((m) => udpAsk(socket.port, m, 5000).finally(() => arrived++)));
      await sleep(300);
      assert.equal(arrived, 0, 'nothing goes out while the buffer is full');
      delete process.env[FULL];
      assert.deepEqual(
        (await replies).map((r) => r?.toString()),
        sent.map((m) => `re:${m.toString()}`),
      );
      assert.equal(counts.send_error, 0);
    } finally {
      delete process.env[FULL];
      socket.close();
    }
  });

  test('beyond four batches waiting a reply is dropped and counted, as is each still waiting at close', async () => {
    const before = counts.send_error;
    const socket = BatchUdpSocket.open(full, '127.0.0.1', 0);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let handled = 0;
    socket.serve(
      (msg) => (handled++, held.then(() => echo(msg))),
      report,
      () => true,
    );
    try {
      const sent = messages(400, 'many');
      const replies = Promise.all(sent.map((m) => udpAsk(socket.port, m, 2000)));
      while (handled < sent.length) await sleep(10);
      process.env[FULL] = '1';
      release(); // 400 replies at once, into a full buffer
      await sleep(100);
      const room = 4 * full.BATCH;
      assert.equal(counts.send_error - before, sent.length - room);
      delete process.env[FULL];
      assert.equal((await replies).filter((r) => r !== null).length, room);

      // some waiting, then close: each counted (the first batch's replies wait, and while
      // they do nothing more is read: how many of the ten that is depends on their arrival)
      process.env[FULL] = '1';
      const late = messages(10, 'late');
      const lost = Promise.all(late.map((m) => udpAsk(socket.port, m, 300)));
      while (handled === sent.length) await sleep(10);
      await sleep(50);
      const waiting = handled - sent.length;
      socket.close();
      assert.equal(counts.send_error - before, sent.length - room + waiting);
      assert.deepEqual(await lost, new Array<null>(late.length).fill(null));
    } finally {
      delete process.env[FULL];
      socket.close();
    }
  });
});

describe('divert serve --udp-batch, one process', { skip: noAddon }, () => {
  let upstream: TestUpstream;
  let divert: TestServer;
  const logs: string[] = [];

  before(async () => {
    upstream = await startUpstream(async (q) => {
      await sleep(Math.random() * 10);
      return replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.7' }] });
    });
    const zone = tempFiles('udp-batch', '.zone')('$ORIGIN batch.test.\n$TTL 30\n@ IN A 192.0.2.1\n*.batch.test. IN A 192.0.2.2\n');
    divert = await startDivert(
      {
        listen: ['127.0.0.1:0', '[::1]:0'],
        upstream: [`127.0.0.1:${upstream.port}`],
        zones: [zone],
        'udp-batch': true,
        workers: '1',
        'log-level': 'warn',
      },
      { logStream: { write: (line) => logs.push(line) } },
    );
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  test('the addon is used: no fallback warning, and no node:dgram socket of this process holds the DNS port', () => {
    assert.deepEqual(
      logs.filter((l) => l.includes('udp-batch')),
      [],
    );
    // one node:dgram socket on the DNS port would mean the flag was ignored
    const dgramPorts = dgramPortsHere();
    assert.ok(dgramPorts.length > 0, 'the upstream test server, at least, is a node:dgram socket');
    assert.ok(!dgramPorts.includes(divert.port), `node:dgram sockets on ${dgramPorts.join(', ')}`);
    assert.ok(udpInodes(divert.port).size === 1, 'the DNS port is bound once');
  });

  test('an intercepted name is answered', async () => {
    const reply = decode(await udpAsk(divert.port, query('www.batch.test')));
    assert.deepEqual(
      reply.answers!.map((a) => (a as { data: unknown }).data),
      ['192.0.2.2'],
    );
  });

  test("a forwarded name gets the upstream's reply unchanged but for the ID", async () => {
    const msg = query('forwarded.example');
    const got = await udpAsk(divert.port, msg);
    assert.ok(got);
    assert.equal(got.readUInt16BE(0), msg.readUInt16BE(0));
    const sent = upstream.sent.find((s) => decode(s).questions![0].name === 'forwarded.example')!;
    assert.deepEqual(withoutId(got), withoutId(sent));
  });

  test('500 queries in flight at once, intercepted and forwarded, each get their own answer', async () => {
    const names = Array.from({ length: 500 }, (_, i) => (i % 2 ? `n${i}.batch.test` : `n${i}.forward.example`));
    const messages = names.map((n) => query(n));
    const replies = await askAll(divert.port, messages);
    assert.deepEqual(replies.map(nameOf), names);
    assert.deepEqual(
      replies.map((r) => r!.readUInt16BE(0)),
      messages.map((m) => m.readUInt16BE(0)),
    );
  });

  test('over IPv6 on ::1', async () => {
    const six = divert.listening[1].port;
    assert.equal(nameOf(await udpAsk(six, query('v6.batch.test'), 3000, '::1')), 'v6.batch.test');
    assert.equal(nameOf(await udpAsk(six, query('v6.forward.example'), 3000, '::1')), 'v6.forward.example');
  });

  test('nothing was counted as lost', async () => {
    const { listener } = await divert.stats();
    assert.deepEqual([listener.handler_error, listener.send_error], [0, 0]);
  });
});

describe('divert serve --udp-batch: each datagram of a batch is judged by its own client', { skip: noAddon }, () => {
  let upstream: TestUpstream;
  let divert: TestServer;

  before(async () => {
    upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.9' }] }),
    );
    const zone = tempFiles('udp-batch-clients', '.zone')('$ORIGIN clients.test.\n$TTL 30\n*.clients.test. IN A 192.0.2.9\n');
    divert = await startDivert({
      listen: ['127.0.0.1:0'],
      upstream: [`127.0.0.1:${upstream.port}`],
      zones: [zone],
      allow: ['127.0.0.2/32', '127.0.0.4/32'],
      'udp-batch': true,
      workers: '1',
    });
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  test('300 queries at once from three addresses: the two allowed get answers, forwarded and intercepted, the other REFUSED', async () => {
    const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const asked = Array.from({ length: 300 }, (_, i) => ({
      source: sources[i % 3],
      name: i % 2 ? `n${i}.clients.test` : `n${i}.forward.example`,
    }));
    const replies = await Promise.all(asked.map((a) => udpAsk(divert.port, query(a.name), 5000, '127.0.0.1', a.source)));
    const got = replies.map((r) => {
      const d = decode(r);
      return `${d.questions![0].name} ${d.rcode} ${(d.answers ?? []).map((x) => (x as { data: string }).data).join(',')}`;
    });
    const expected = asked.map((a) =>
      a.source === '127.0.0.3'
        ? `${a.name} REFUSED `
        : `${a.name} NOERROR ${a.name.endsWith('.clients.test') ? '192.0.2.9' : '203.0.113.9'}`,
    );
    assert.deepEqual(got, expected);
  });
});

/** `divert serve --udp-batch` on a loopback port the OS picks. */
function serveArgs(zone: string, upstream: string, workers: string): string[] {
  return ['serve', '--listen', '127.0.0.1:0', '--zones', zone, '--upstream', upstream, '--workers', workers, '--udp-batch'];
}

/** The inodes of the UDP sockets bound to `port` on 127.0.0.1, from /proc/net/udp. */
function udpInodes(port: number): Set<string> {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const lines = readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1);
  return new Set(lines.map((l) => l.trim().split(/\s+/)).flatMap((f) => (f[1] === hex ? [f[9]] : [])));
}

function holdsSocket(pid: number, inodes: Set<string>): boolean {
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
    } catch {
      return false;
    }
  });
}

describe('divert serve --udp-batch --workers 2', { skip: noAddon }, () => {
  let upstream: TestUpstream;
  let divert: DivertProcess;
  let port: number;
  let admin: string;
  const token = 'udp-batch-workers-token-0123456789';
  const metrics = async () => {
    const res = await fetch(`http://${admin}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    return res.text();
  };

  before(async () => {
    upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.8' }] }),
    );
    const zone = tempFiles('udp-batch-workers', '.zone')('$ORIGIN batch.test.\n*.batch.test. 30 IN A 192.0.2.2\n');
    divert = runDivert([...serveArgs(zone, `127.0.0.1:${upstream.port}`, '2'), '--admin-token', token]);
    port = await divert.listening(20_000);
    admin = (await divert.listeningLine()).admin;
  });
  after(async () => {
    await divert?.stop();
    await upstream?.close();
  });

  test('one socket on the port, bound by the primary and read by both workers', () => {
    const inodes = udpInodes(port);
    assert.equal(inodes.size, 1);
    const workers = [...workersOf(divert.child.pid!).values()];
    assert.equal(workers.length, 2);
    for (const pid of workers) assert.ok(holdsSocket(pid, inodes), `worker ${pid} holds it`);
    assert.ok(holdsSocket(divert.child.pid!, inodes));
  });

  test('400 queries from 400 source ports, all answered', async () => {
    const names = Array.from({ length: 400 }, (_, i) => (i % 2 ? `w${i}.batch.test` : `w${i}.forward.example`));
    const replies = await askAll(
      port,
      names.map((n) => query(n)),
    );
    assert.deepEqual(replies.map(nameOf), names);
  });

  // below one worker's capacity every datagram waking whichever worker is free costs a
  // wake-up per query in each: the second leaves the socket to the first, and comes back
  // when a datagram has waited 10 ms (or a batch's worth waits), as when the first stalls
  test('the second worker leaves the socket to the first while it keeps up, and reads it again when the first stalls', async () => {
    const deadline = Date.now() + 15_000;
    let text = await metrics();
    while (sumOf(text, 'divert_worker_udp_reading', { worker: '2' }) !== 0) {
      assert.ok(Date.now() < deadline, 'worker 2 left the socket within 15 s of quiet');
      await sleep(200);
      text = await metrics();
    }
    assert.equal(sumOf(text, 'divert_worker_udp_reading', { worker: '1' }), 1, 'the first worker reads it');
    assert.ok(sumOf(text, 'divert_worker_udp_spill_total', { worker: '2', event: 'leave' }) >= 1);
    assert.equal(sumOf(text, 'divert_worker_udp_spill_total', { worker: '1' }), 0, 'the first worker never leaves');
    const joins = sumOf(text, 'divert_worker_udp_spill_total', { worker: '2', event: 'join' });
    await everyClientAnsweredWhileStalled(workersOf(divert.child.pid!).get(1)!, 'first');
    text = await metrics();
    assert.ok(sumOf(text, 'divert_worker_udp_spill_total', { worker: '2', event: 'join' }) > joins, 'worker 2 came back');
  });

  // with a socket per worker (SO_REUSEPORT) the kernel hashed each client to one worker's
  // socket: the stalled worker's share of the clients went unanswered
  test('a stalled worker (SIGSTOP) strands no client: queries from 200 source ports are all answered by the other', async () => {
    await everyClientAnsweredWhileStalled(workersOf(divert.child.pid!).get(2)!, 'stalled');
  });

  test('a worker started in place of one that died reads the same socket: with the other stalled, it answers every client', async () => {
    const workers = workersOf(divert.child.pid!);
    process.kill(workers.get(2)!, 'SIGKILL');
    let fresh: number | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && ((fresh = workersOf(divert.child.pid!).get(2)) === undefined || fresh === workers.get(2)))
      await sleep(50);
    assert.ok(fresh !== undefined && fresh !== workers.get(2), 'a new worker 2');
    await until(() => divert.stdout().includes('new worker serving'), 15_000);
    assert.ok(holdsSocket(fresh, udpInodes(port)), 'the new worker holds the socket');
    await everyClientAnsweredWhileStalled(workers.get(1)!, 'fresh');
  });

  // the second worker joins a queue that waits only when the first's thread is on a CPU 90 % of
  // the time (a client keeping many queries in flight keeps a queue waiting either way, and two
  // readers split each batch): it weighs the first worker's CPU, the worker the primary names,
  // a restarted one too; without that name it could not tell, and the metric would be gone
  test("the second worker weighs the first worker's CPU, and a restarted first worker's", async () => {
    for (const round of ['first', 'restarted']) {
      // weighed once the new first worker has had 10 looks (50 ms), and at rest once its start-up is over
      let idle = firstBusyOf(await metrics());
      for (
        const deadline = Date.now() + 10_000;
        (idle === null || idle >= 0.5) && Date.now() < deadline;
        idle = firstBusyOf(await metrics())
      )
        await sleep(200);
      assert.ok(idle !== null && idle < 0.5, `${round}: worker 2 reports the first worker's CPU share at rest (${idle})`);
      // weighed every 5 ms over the last 320 ms: looked at until it rises, while the load lasts
      const loaded = await whileLoading(async () => {
        let busy = firstBusyOf(await metrics());
        for (const deadline = Date.now() + 3000; (busy ?? 0) <= idle + 0.02 && Date.now() < deadline; busy = firstBusyOf(await metrics()))
          await sleep(200);
        return busy;
      });
      assert.ok(loaded !== null && loaded > idle + 0.02, `${round}: the share rises while the first worker answers (${idle} -> ${loaded})`);
      if (round === 'restarted') break;
      const first = workersOf(divert.child.pid!).get(1)!;
      const served = divert.stdout().split('new worker serving').length;
      process.kill(first, 'SIGKILL');
      await until(() => divert.stdout().split('new worker serving').length > served, 15_000);
      const fresh = workersOf(divert.child.pid!).get(1);
      assert.ok(fresh !== undefined && fresh !== first, 'a new worker 1');
    }
  });

  /** worker 2's divert_worker_udp_first_busy, or null when it does not report one. */
  function firstBusyOf(text: string): number | null {
    const sample = parseMetrics(text).find((s) => s.name === 'divert_worker_udp_first_busy' && s.labels.worker === '2');
    return sample ? sample.value : null;
  }

  /** Runs `during` while one socket sends intercepted queries as fast as it can (at most 4 s, 400,000 queries). */
  async function whileLoading<T>(during: () => Promise<T>): Promise<T> {
    const socket = createSocket('udp4');
    socket.on('message', () => {});
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const messages = Array.from({ length: 100 }, (_, i) => query(`load${i}.batch.test`));
    let stop = false;
    const deadline = Date.now() + 4000;
    const load = (async () => {
      for (let sent = 0; !stop && sent < 400_000 && Date.now() < deadline; sent += messages.length) {
        for (const m of messages) socket.send(m, port, '127.0.0.1');
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    try {
      return await during();
    } finally {
      stop = true;
      await load;
      socket.close();
    }
  }

  /** With worker `pid` stopped, 200 queries from 200 source ports each get their answer (within udpAsk's 5 s). */
  async function everyClientAnsweredWhileStalled(pid: number, tag: string): Promise<void> {
    process.kill(pid, 'SIGSTOP');
    try {
      const names = Array.from({ length: 200 }, (_, i) => (i % 2 ? `${tag}${i}.batch.test` : `${tag}${i}.forward.example`));
      const replies = await askAll(
        port,
        names.map((n) => query(n)),
      );
      assert.deepEqual(
        replies.map((r) => (r ? nameOf(r) : null)),
        names,
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }
});

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The ports of this process's node:dgram sockets: a server run in this process has its
 * node:dgram sockets among the active handles (the addon's are libuv poll handles, not
 * among them). */
function dgramPortsHere(): number[] {
  return (process as unknown as { _getActiveHandles(): unknown[] })
    ._getActiveHandles()
    .filter((h): h is Socket => h instanceof Socket)
    .flatMap((socket) => {
      try {
        return [socket.address().port];
      } catch {
        return []; // not bound (an upstream socket still connecting)
      }
    });
}

// npm test runs the suite twice, the second time with DIVERT_TEST_UDP_BATCH=0: this shows
// the two runs really differ, the servers the helpers start on the addon by default and on
// node:dgram in the second run (were the setting lost, both would run the addon, and the
// fallback would go untested)
describe("the servers the tests start: on the addon by default, on node:dgram in npm test's second run", () => {
  const second = process.env.DIVERT_TEST_UDP_BATCH === '0';
  test(
    second ? 'DIVERT_TEST_UDP_BATCH=0: the DNS port is a node:dgram socket' : "the DNS port is the addon's socket",
    { skip: second ? false : noAddon },
    async () => {
      const divert = await startDivert({ workers: '1' });
      try {
        assert.equal(dgramPortsHere().includes(divert.port), second);
      } finally {
        await divert.close();
      }
    },
  );
});

describe('--udp-batch without the addon', () => {
  test('falls back to node:dgram with a warning, and answers', async () => {
    const zone = tempFiles('udp-batch-fallback', '.zone')('$ORIGIN batch.test.\nwww 30 IN A 192.0.2.3\n');
    const divert = runDivert(serveArgs(zone, '127.0.0.1:9', '1'), { env: { DIVERT_UDP_BATCH_ADDON: '/nonexistent/udp-batch.node' } });
    try {
      const port = await divert.listening(20_000);
      assert.equal(nameOf(await udpAsk(port, query('www.batch.test'))), 'www.batch.test');
      assert.match(divert.stdout(), /udp-batch: the native addon is not built/);
    } finally {
      await divert.stop();
    }
  });
});
