// Faults, with real processes and sockets on loopback: Redis killed (-9) during a stream
// of writes, `divert serve` killed during writes, SIGTERM while queries are in flight, a
// replica cut off from Redis and back, and upstreams that answer garbage, forge replies,
// reset TCP mid-reply or answer late. What an operator relies on: an acknowledged write
// is never lost and no write is applied twice; a stop loses no query it has begun; a
// replica catches up by itself; a broken upstream costs a SERVFAIL, never the process.

import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import dnsPacket from 'dns-packet';
import { lengthPrefix, TcpFramer } from '../src/transport/tcp-framer.js';
import { startRedis, uniquePrefix, type RedisProcess } from './helpers/redis.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { decode, query, tcpAsk, tcpSession, udpAsk } from './helpers/divert.js';
import { FLAG, ipv4, rawReply, rr } from './helpers/raw.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { sumOf } from './helpers/metrics.js';

const TOKEN = 'faults-test-token-0123456789abcdef';
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const A = 1,
  IN = 1;
const RESPONSE = FLAG.QR | FLAG.RD | FLAG.RA;

interface Serve {
  process: DivertProcess;
  /** http://HOST:PORT of the admin API. */
  admin: string;
  dnsPort: number;
  resolver: Resolver;
}

/** Clean-ups run last registered first (t.after runs its hooks in order): divert stops before its upstreams. */
function deferrer(t: TestContext): (cleanup: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    for (const cleanup of stack.reverse()) await cleanup();
  });
  return (cleanup) => void stack.push(cleanup);
}

/** Starts `divert serve` (the built binary) on loopback ports of its own choosing. */
async function serve(defer: (cleanup: () => unknown) => void, args: string[]): Promise<Serve> {
  const process = runDivert(['serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--admin-token', TOKEN, ...args]);
  defer(() => process.stop());
  const line = await process.listeningLine(20_000); // slow only on a machine under load
  const dnsPort = Number(/:(\d+)$/.exec(line.listen[0])![1]);
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dnsPort}`]);
  return { process, admin: `http://${line.admin}`, dnsPort, resolver };
}

/** One admin request, given up on after `timeoutMs`. */
function api(admin: string, path: string, init: RequestInit = {}, timeoutMs = 2000): Promise<Response> {
  return fetch(admin + path, { ...init, headers: HEADERS, signal: AbortSignal.timeout(timeoutMs) });
}

/** Polls until `check` holds; fails naming `what` after `timeoutMs`. Returns the time it took. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return Date.now() - started;
    } catch (err) {
      last = err;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
    await sleep(20);
  }
}

async function answers(resolver: Resolver, name: string): Promise<string[]> {
  return (await resolver.resolve4(name)).sort();
}

// ---------------------------------------------------------------------------------------
// A stream of writes with a crash in the middle

const WRITES = 1000;
const CRASH_AFTER = 300;
const nameOf = (i: number) => `w${String(i).padStart(3, '0')}.faults.test`;
const addressOf = (i: number) => `10.77.${i >> 8}.${i & 255}`;

type Outcome = 'acked' | 'refused' | 'no-reply' | 'unreachable';

/**
 * WRITES puts, each of its own name and address, 4 at a time, each sent once (never
 * retried), to whatever admin URL `target()` says now. `crash` runs (concurrently) once
 * CRASH_AFTER writes have been answered. Every outcome is kept: acknowledged (2xx),
 * refused (an HTTP error), no reply (the request went out, no answer came: reset or
 * timeout), unreachable (the connection was refused: nothing was sent).
 */
async function writeStream(
  target: () => string,
  crash: () => Promise<void>,
): Promise<{ outcomes: Outcome[]; statuses: Map<number, number>; codes: string[] }> {
  const outcomes: Outcome[] = new Array(WRITES);
  const codes: string[] = new Array(WRITES);
  const statuses = new Map<number, number>();
  let next = 0;
  let answered = 0;
  let crashing: Promise<void> | undefined;
  const writer = async () => {
    for (let i = next++; i < WRITES; i = next++) {
      try {
        const response = await api(
          target(),
          `/v1/names/${nameOf(i)}`,
          { method: 'PUT', body: JSON.stringify({ a: [addressOf(i)], ttl: 30 }) },
          3000,
        );
        outcomes[i] = response.ok ? 'acked' : 'refused';
        if (response.ok) await response.body?.cancel();
        else {
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          codes[i] = ((await response.json().catch(() => ({}))) as { error?: { code?: string } }).error?.code ?? '';
        }
      } catch (err) {
        const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
        outcomes[i] = code === 'ECONNREFUSED' ? 'unreachable' : 'no-reply';
      }
      if (++answered === CRASH_AFTER) crashing = crash();
      // a failing write comes back at once: do not burn through the names while the server
      // is away (a restart takes seconds on a busy machine; 10 ms between failures burnt
      // 600 names so, and fewer than half were acknowledged)
      if (outcomes[i] !== 'acked') await sleep(50);
    }
  };
  await Promise.all(Array.from({ length: 4 }, writer));
  await crashing;
  return { outcomes, statuses, codes };
}

/**
 * The checks after a crash: every acknowledged write is there with its address (through
 * the admin API and in Redis), and every name has at most one put in its history (the
 * client wrote each name once); a write that was refused or got no reply is there once
 * with its own address, or absent. The table's version counter matches the number of
 * entries: no script ran twice.
 */
async function checkWrites(
  t: TestContext,
  admin: string,
  redisUrl: string,
  prefix: string,
  outcomes: Outcome[],
  statuses: Map<number, number>,
  codes: string[],
): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  t.after(() => redis.disconnect());
  const base = `${prefix}{table}:`;
  const pipeline = redis.pipeline();
  for (let i = 0; i < WRITES; i++) {
    pipeline.hget(`${base}entries`, nameOf(i));
    pipeline.llen(`${base}history:${nameOf(i)}`);
  }
  const raw = (await pipeline.exec())!.map(([err, value]) => {
    assert.equal(err, null);
    return value;
  });
  const inRedis = (i: number) => raw[2 * i] as string | null;
  const historyLength = (i: number) => raw[2 * i + 1] as number;

  const counts: Record<Outcome, number> = { acked: 0, refused: 0, 'no-reply': 0, unreachable: 0 };
  const presentAnyway: Record<Outcome, number> = { acked: 0, refused: 0, 'no-reply': 0, unreachable: 0 };
  for (let i = 0; i < WRITES; i++) {
    const outcome = outcomes[i];
    assert.ok(outcome, `write ${i} has an outcome`);
    counts[outcome]++;
    const stored = inRedis(i);
    assert.ok(historyLength(i) <= 1, `${nameOf(i)} (${outcome}): ${historyLength(i)} changes in its history for one write`);
    if (stored !== null) {
      presentAnyway[outcome]++;
      assert.deepEqual((JSON.parse(stored) as { a: string[] }).a, [addressOf(i)], `${nameOf(i)} holds its own address`);
      assert.equal(historyLength(i), 1, `${nameOf(i)}: present, so one change in its history`);
    } else {
      assert.notEqual(outcome, 'acked', `${nameOf(i)}: acknowledged but missing from Redis`);
      assert.equal(historyLength(i), 0, `${nameOf(i)}: absent, so no change in its history`);
    }
    if (outcome === 'unreachable') assert.equal(stored, null, `${nameOf(i)}: never sent, yet present`);
    // a refusal is a promise that nothing changed, unless it says the outcome is unknown
    if (outcome === 'refused' && stored !== null)
      assert.equal(codes[i], 'OUTCOME_UNKNOWN', `${nameOf(i)}: refused with ${codes[i]}, yet applied`);
  }
  // through the admin API too: the entry and its history as an operator reads them
  const sample = outcomes.map((o, i) => [o, i] as const).filter(([o, i]) => o === 'acked' || inRedis(i) !== null);
  for (let k = 0; k < sample.length; k += 10) {
    await Promise.all(
      sample.slice(k, k + 10).map(async ([, i]) => {
        const entry = await api(admin, `/v1/names/${nameOf(i)}`, {}, 5000);
        assert.equal(entry.status, 200, `GET ${nameOf(i)}`);
        assert.deepEqual(((await entry.json()) as { a: string[] }).a, [addressOf(i)]);
        const history = await api(admin, `/v1/names/${nameOf(i)}/history`, {}, 5000);
        const records = ((await history.json()) as { history: { op: string }[] }).history;
        assert.deepEqual(
          records.map((r) => r.op),
          ['put'],
          `${nameOf(i)}: one put in its history`,
        );
      }),
    );
  }
  const entries = await redis.hlen(`${base}entries`);
  const seq = Number(await redis.get(`${base}seq`));
  assert.equal(entries, sample.length);
  assert.equal(seq, entries, 'one version drawn per entry: no write script ran twice');
  assert.ok(counts.acked >= WRITES / 2, `${counts.acked} of ${WRITES} acknowledged`);
  t.diagnostic(
    `${WRITES} writes: ${counts.acked} acknowledged, ${counts.refused} refused (${[...statuses].map(([s, n]) => `${n}× ${s}`).join(', ') || 'none'}; ${codes.filter((c) => c === 'OUTCOME_UNKNOWN').length} of them OUTCOME_UNKNOWN), ` +
      `${counts['no-reply']} without reply, ${counts.unreachable} unreachable (connection refused); ` +
      `present although not acknowledged: ${presentAnyway.refused} refused, ${presentAnyway['no-reply']} without reply`,
  );
}

describe('a crash during 1,000 writes', () => {
  test('Redis killed (-9) and restarted with persistence: every acknowledged write is there, none twice', async (t) => {
    const defer = deferrer(t);
    const redis = await startRedis({ persist: true }); // appendonly yes, appendfsync always
    defer(() => redis.stop());
    const prefix = uniquePrefix('faults-redis');
    const divert = await serve(defer, ['--upstream', '127.0.0.1:9', '--redis', redis.url, '--redis-prefix', prefix, '--workers', '1']);
    let outage = 0;
    const { outcomes, statuses, codes } = await writeStream(
      () => divert.admin,
      async () => {
        const killed = Date.now();
        await redis.kill();
        await sleep(1000);
        await redis.restart();
        outage = Date.now() - killed;
      },
    );
    t.diagnostic(`Redis was away for ${outage} ms`);
    assert.ok(
      outcomes.slice(CRASH_AFTER).some((o) => o !== 'acked'),
      'some writes met the outage',
    );
    assert.ok(
      outcomes.slice(-50).every((o) => o === 'acked'),
      'divert recovered by itself: the last 50 writes were acknowledged',
    );
    await checkWrites(t, divert.admin, redis.url, prefix, outcomes, statuses, codes);
    assert.equal(divert.process.child.exitCode, null, 'divert kept running');
  });

  test('divert serve killed (-9) and started again on the same Redis: every acknowledged write is there, none twice', async (t) => {
    const defer = deferrer(t);
    const redis = await startRedis({ persist: true });
    defer(() => redis.stop());
    const prefix = uniquePrefix('faults-serve');
    const args = ['--upstream', '127.0.0.1:9', '--redis', redis.url, '--redis-prefix', prefix, '--workers', '1'];
    let divert = await serve(defer, args);
    const { outcomes, statuses, codes } = await writeStream(
      () => divert.admin,
      async () => {
        divert.process.child.kill('SIGKILL');
        await divert.process.exited(5000);
        divert = await serve(defer, args);
      },
    );
    assert.ok(
      outcomes.slice(CRASH_AFTER).some((o) => o !== 'acked'),
      'some writes met the crash',
    );
    assert.ok(
      outcomes.slice(-50).every((o) => o === 'acked'),
      'the new divert acknowledged the last 50 writes',
    );
    await checkWrites(t, divert.admin, redis.url, prefix, outcomes, statuses, codes);
  });
});

// ---------------------------------------------------------------------------------------
// SIGTERM: stop accepting, finish what is in flight, exit 0

for (const workers of ['1', '2']) {
  test(`SIGTERM with --workers ${workers}: queries in flight get their answers, new ones none, exit 0 within the query timeout + 1 s`, async (t) => {
    const defer = deferrer(t);
    const SLOW_MS = 800;
    const QUERY_TIMEOUT_MS = 2000;
    const upstream = await startUpstream(async (q) => {
      await sleep(SLOW_MS);
      return replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.80' }] });
    });
    defer(() => upstream.close());
    const divert = await serve(defer, [
      '--upstream',
      `127.0.0.1:${upstream.port}`,
      '--upstream-timeout-ms',
      '1500',
      '--query-timeout-ms',
      String(QUERY_TIMEOUT_MS),
      '--workers',
      workers,
    ]);

    const udpQueries = Array.from({ length: 20 }, (_, i) => query(`u${i}.drain.test`));
    const udpReplies = udpQueries.map((msg) => udpAsk(divert.dnsPort, msg, 4000));
    const session = tcpSession(divert.dnsPort);
    defer(() => session.close());
    await session.connected;
    const tcpQueries = Array.from({ length: 3 }, (_, i) => query(`t${i}.drain.test`));
    session.writeRaw(Buffer.concat(tcpQueries.flatMap((msg) => [lengthPrefix(msg), msg]))); // pipelined, one write
    // all 23 are in flight once the upstream has them
    await until('the upstream has every query', 1000, async () => upstream.queries.length >= 23);

    const signalled = Date.now();
    divert.process.child.kill('SIGTERM');
    const exited = divert.process.exited(QUERY_TIMEOUT_MS + 1000);
    await sleep(300); // the signal has been handled (by every worker, too)

    // after the signal: a new query on the open connection, over UDP and on a new connection
    const late = query('late-tcp.drain.test');
    session.send(late);
    const lateUdp = udpAsk(divert.dnsPort, query('late-udp.drain.test'), 1500);
    const lateTcp = new Promise<Buffer | 'refused' | null>((resolve) => {
      const s = tcpSession(divert.dnsPort);
      s.socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : null));
      s.send(query('late-new-tcp.drain.test'));
      s.waitFor(1, 1500)
        .then(
          (r) => resolve(r[0]),
          () => resolve(null),
        )
        .finally(() => s.close());
    });

    const got = await Promise.all(udpReplies);
    got.forEach((reply, i) => {
      assert.ok(reply, `UDP query ${i} in flight at SIGTERM got a reply`);
      const packet = decode(reply);
      assert.equal(packet.id, udpQueries[i].readUInt16BE(0));
      assert.equal(packet.rcode, 'NOERROR', `UDP query ${i}: the upstream's answer, not ${packet.rcode}`);
      assert.deepEqual(
        packet.answers!.map((a) => (a as { data: string }).data),
        ['203.0.113.80'],
      );
    });
    const overTcp = await session.waitFor(3, 3000);
    assert.deepEqual(
      overTcp.map((r) => decode(r).id).sort(),
      tcpQueries.map((m) => m.readUInt16BE(0)).sort(),
      'the pipelined TCP queries, each answered',
    );
    for (const reply of overTcp) assert.equal(decode(reply).rcode, 'NOERROR');

    assert.equal(await exited, 0, 'exit status 0');
    const drainMs = Date.now() - signalled;
    t.diagnostic(`--workers ${workers}: exited ${drainMs} ms after SIGTERM (upstream answers after ${SLOW_MS} ms)`);
    assert.ok(drainMs <= QUERY_TIMEOUT_MS + 1000, `exited ${drainMs} ms after SIGTERM`);

    assert.equal(await lateUdp, null, 'a UDP query after SIGTERM is not answered');
    await assert.rejects(api(divert.admin, '/healthz', {}, 1000), 'the admin port takes no connection after SIGTERM');
    const lateTcpReply = await lateTcp;
    assert.ok(lateTcpReply === null || lateTcpReply === 'refused', 'a new TCP connection after SIGTERM gets no answer');
    await session.closed;
    assert.equal(session.replies.length, 3, 'the query sent on the open connection after SIGTERM got no answer');
    assert.deepEqual(
      upstream.queries.map((q) => q.packet.questions![0].name).filter((n) => n.startsWith('late')),
      [],
      'nothing sent after SIGTERM was forwarded',
    );
  });
}

test('SIGTERM while the only upstream is silent: the queries in flight get SERVFAIL at the query timeout, then exit 0', async (t) => {
  const defer = deferrer(t);
  const QUERY_TIMEOUT_MS = 1000;
  const upstream = await startUpstream(() => null);
  defer(() => upstream.close());
  const divert = await serve(defer, [
    '--upstream',
    `127.0.0.1:${upstream.port}`,
    '--upstream-timeout-ms',
    '300',
    '--query-timeout-ms',
    String(QUERY_TIMEOUT_MS),
    '--workers',
    '1',
  ]);
  const asked = Date.now();
  const replies = Promise.all([
    udpAsk(divert.dnsPort, query('silent1.drain.test'), 3000),
    tcpAsk(divert.dnsPort, query('silent2.drain.test'), 3000),
  ]);
  await until('the upstream has both queries', 1000, async () => upstream.queries.length >= 2);
  divert.process.child.kill('SIGTERM');
  for (const reply of await replies) assert.equal(decode(reply).rcode, 'SERVFAIL');
  assert.equal(await divert.process.exited(QUERY_TIMEOUT_MS + 1000), 0);
  const elapsed = Date.now() - asked;
  t.diagnostic(`exited ${elapsed} ms after the queries were sent (query timeout ${QUERY_TIMEOUT_MS} ms)`);
  assert.ok(elapsed <= QUERY_TIMEOUT_MS + 1000, `exited after ${elapsed} ms`);
});

// ---------------------------------------------------------------------------------------
// A replica cut off from Redis

/** A TCP forwarder to `port` that can be cut (every connection dropped, new ones reset) and restored. */
async function startProxy(port: number): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  let cut = false;
  const server: Server = createServer((client) => {
    if (cut) return void client.resetAndDestroy();
    const upstream = connect({ host: '127.0.0.1', port });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.on('error', drop);
      s.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut: () => {
      cut = true;
      for (const [client, upstream] of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    restore: () => {
      cut = false;
    },
    close: async () => {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('a replica cut off from Redis says so on /healthz, and converges when it is back', async (t) => {
  const defer = deferrer(t);
  const redis: RedisProcess = await startRedis();
  defer(() => redis.stop());
  const proxy = await startProxy(redis.port);
  defer(() => proxy.close());
  const upstream = await startUpstream((q) =>
    replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.90' }] }),
  );
  defer(() => upstream.close());
  const prefix = uniquePrefix('faults-partition');
  const args = (url: string) => ['--upstream', `127.0.0.1:${upstream.port}`, '--redis', url, '--redis-prefix', prefix, '--workers', '1'];
  const a = await serve(defer, args(redis.url));
  const b = await serve(defer, args(`redis://127.0.0.1:${proxy.port}`));
  const put = (replica: Serve, name: string, address: string) =>
    api(replica.admin, `/v1/names/${name}`, { method: 'PUT', body: JSON.stringify({ a: [address] }) });
  const health = async (replica: Serve) => {
    const response = await api(replica.admin, '/healthz');
    await response.body?.cancel();
    return response.status;
  };

  assert.equal((await put(a, 'moved.faults.test', '192.0.2.1')).status, 200);
  await until('B answers the first address', 2000, async () => (await answers(b.resolver, 'moved.faults.test'))[0] === '192.0.2.1');
  assert.equal(await health(b), 200);

  proxy.cut();
  const down = await until('B reports Redis unreachable on /healthz', 5000, async () => (await health(b)) === 503);
  t.diagnostic(`B's /healthz said 503 ${down} ms after the cut`);
  assert.equal((await put(b, 'refused.faults.test', '192.0.2.9')).status, 503, 'B refuses writes while cut off');
  // changes B cannot hear: one to a name it has cached, one new name
  assert.equal((await put(a, 'moved.faults.test', '192.0.2.2')).status, 200);
  assert.equal((await put(a, 'new.faults.test', '192.0.2.3')).status, 200);
  await sleep(300);
  assert.deepEqual(await answers(b.resolver, 'moved.faults.test'), ['192.0.2.1'], 'cut off, B answers from its cache');
  assert.equal(await health(b), 503, 'still 503 while cut off');
  const redisUp = async () => sumOf(await (await api(b.admin, '/metrics')).text(), 'divert_redis_up', { process: 'primary' });
  assert.equal(await redisUp(), 0, 'divert_redis_up says the connection is down');

  const restored = Date.now();
  proxy.restore();
  await until(
    'B answers the address written while it was cut off',
    10_000,
    async () => (await answers(b.resolver, 'moved.faults.test'))[0] === '192.0.2.2',
  );
  await until(
    'B answers the name created while it was cut off',
    2000,
    async () => (await answers(b.resolver, 'new.faults.test'))[0] === '192.0.2.3',
  );
  await until('B healthy again', 2000, async () => (await health(b)) === 200);
  assert.equal(await redisUp(), 1, 'divert_redis_up says it is back');
  t.diagnostic(`B converged ${Date.now() - restored} ms after the partition ended`);
  // and it hears changes as they happen again
  assert.equal((await put(a, 'moved.faults.test', '192.0.2.4')).status, 200);
  await until(
    'B hears a change made after the partition',
    1000,
    async () => (await answers(b.resolver, 'moved.faults.test'))[0] === '192.0.2.4',
  );
});

// ---------------------------------------------------------------------------------------
// Upstream faults not covered by forward.test.ts and upstream-sockets.test.ts (which cover a
// silent upstream, wrong-ID and wrong-question replies over UDP, TCP refused, TCP reset
// between replies, and a slow first of two upstreams)

/**
 * An upstream on one port for UDP and TCP whose behaviour is the query name's first label:
 * `garbage` (bytes that are no DNS message), `wrongid` (the right reply with another ID),
 * `wrongq` (the right ID, another question), `halfreset` (TCP: half the reply, then a
 * reset), `slow` (answers after 300 ms), anything else: an answer.
 */
async function startFaultyUpstream(): Promise<{ port: number; asked: () => number; close(): Promise<void> }> {
  const answer = (raw: Buffer) =>
    rawReply(raw, { flags: RESPONSE, answers: [rr(dnsPacket.decode(raw).questions![0].name, A, IN, 60, ipv4('203.0.113.50'))] });
  let asked = 0;
  /** What to send for `raw`: messages (each framed over TCP), 'half' or nothing. */
  const behave = async (raw: Buffer): Promise<Buffer[] | 'half'> => {
    asked++;
    const label = dnsPacket.decode(raw).questions![0].name.split('.')[0].toLowerCase();
    switch (label) {
      case 'garbage':
        return [Buffer.from('this is not a DNS message at all'), Buffer.from([0x7f])];
      case 'wrongid': {
        const reply = answer(raw);
        reply.writeUInt16BE((raw.readUInt16BE(0) + 1) & 0xffff, 0);
        return [reply];
      }
      case 'wrongq': {
        const forged = answer(query('victim.faults.test'));
        forged.writeUInt16BE(raw.readUInt16BE(0), 0);
        return [forged];
      }
      case 'halfreset':
        return 'half';
      case 'slow':
        await sleep(300);
        return [answer(raw)];
      default:
        return [answer(raw)];
    }
  };
  const connections = new Set<Socket>();
  const serveConnection = (socket: Socket) => {
    const framer = new TcpFramer();
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      for (const raw of framer.push(chunk)) {
        void behave(raw).then((out) => {
          if (socket.destroyed) return;
          if (out === 'half') {
            const reply = answer(raw);
            socket.write(Buffer.concat([lengthPrefix(reply), reply.subarray(0, reply.length >> 1)]), () => socket.resetAndDestroy());
          } else {
            for (const msg of out) socket.write(Buffer.concat([lengthPrefix(msg), msg]));
          }
        });
      }
    });
  };
  const listenTcp = (port: number) =>
    new Promise<Server>((resolve, reject) => {
      const server = createServer(serveConnection);
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  // UDP on a port the OS picks, then TCP on the same one; another pair when that TCP port is taken
  let udp: DgramSocket | undefined;
  let tcp: Server | undefined;
  for (let tries = 0; !tcp; tries++) {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    tcp = await listenTcp(socket.address().port).catch((err: NodeJS.ErrnoException) => {
      socket.close();
      if (err.code !== 'EADDRINUSE' || tries >= 20) throw err;
      return undefined;
    });
    udp = socket;
  }
  const port = udp!.address().port;
  udp!.on('message', (raw, rinfo) => {
    void behave(raw).then((out) => {
      if (out !== 'half') for (const msg of out) udp!.send(msg, rinfo.port, rinfo.address);
    });
  });
  return {
    port,
    asked: () => asked,
    close: async () => {
      udp!.close();
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}

async function metric(admin: string, name: string): Promise<number> {
  const text = await (await api(admin, '/metrics')).text();
  return sumOf(text, name);
}

const addressesOf = (reply: Buffer | null) => (decode(reply).answers ?? []).map((a) => (a as { data: string }).data);

describe('upstream faults', () => {
  test('garbage, forged TCP replies and a TCP reset mid-reply from the only upstream: SERVFAIL in time, counted, and the process stays up', async (t) => {
    const defer = deferrer(t);
    const faulty = await startFaultyUpstream();
    defer(() => faulty.close());
    const divert = await serve(defer, [
      '--upstream',
      `127.0.0.1:${faulty.port}`,
      '--upstream-timeout-ms',
      '300',
      '--query-timeout-ms',
      '800',
      '--workers',
      '1',
    ]);
    const before = await metric(divert.admin, 'divert_forward_rejected_replies_total');
    const started = Date.now();
    const cases: [string, 'udp' | 'tcp'][] = [
      ['garbage.faults.test', 'udp'],
      ['garbage.faults.test', 'tcp'],
      ['wrongid.faults.test', 'tcp'],
      ['wrongq.faults.test', 'tcp'],
      ['halfreset.faults.test', 'tcp'],
    ];
    const replies = await Promise.all(
      cases.map(([name, transport]) =>
        transport === 'udp' ? udpAsk(divert.dnsPort, query(name), 3000) : tcpAsk(divert.dnsPort, query(name), 3000),
      ),
    );
    const elapsed = Date.now() - started;
    replies.forEach((reply, i) => assert.equal(decode(reply).rcode, 'SERVFAIL', `${cases[i][0]} over ${cases[i][1]}`));
    assert.ok(elapsed < 1500, `every SERVFAIL within ${elapsed} ms (query timeout 800 ms)`);
    // garbage: 2 per attempt over UDP, 2 frames per attempt over TCP; one forged reply per wrongid/wrongq attempt
    const rejected = (await metric(divert.admin, 'divert_forward_rejected_replies_total')) - before;
    t.diagnostic(`${rejected} upstream replies rejected and counted; the upstream was asked ${faulty.asked()} times`);
    assert.ok(rejected >= 4 + 1 + 1, `${rejected} rejected replies counted`);
    // the process is up and answers what the same upstream answers properly
    assert.deepEqual(addressesOf(await udpAsk(divert.dnsPort, query('fine.faults.test'))), ['203.0.113.50']);
    assert.deepEqual(addressesOf(await tcpAsk(divert.dnsPort, query('fine.faults.test'))), ['203.0.113.50']);
    assert.equal(divert.process.child.exitCode, null, 'still running');
  });

  test('a slow only upstream (past the attempt timeout, within the query timeout) is waited for; a broken first upstream gives way to the second', async (t) => {
    const defer = deferrer(t);
    const faulty = await startFaultyUpstream();
    defer(() => faulty.close());
    const good: TestUpstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.51' }] }),
    );
    defer(() => good.close());
    const alone = await serve(defer, [
      '--upstream',
      `127.0.0.1:${faulty.port}`,
      '--upstream-timeout-ms',
      '100',
      '--query-timeout-ms',
      '800',
      '--workers',
      '1',
    ]);
    for (const ask of [udpAsk, tcpAsk]) {
      const started = Date.now();
      const reply = await ask(alone.dnsPort, query('slow.faults.test'), 3000);
      assert.deepEqual(addressesOf(reply), ['203.0.113.50'], `${ask.name}: the late answer, not SERVFAIL`);
      assert.ok(Date.now() - started >= 250, 'it came when the upstream sent it');
    }

    const two = await serve(defer, [
      '--upstream',
      `127.0.0.1:${faulty.port}`,
      '--upstream',
      `127.0.0.1:${good.port}`,
      '--upstream-timeout-ms',
      '150',
      '--query-timeout-ms',
      '1500',
      '--workers',
      '1',
    ]);
    const cases: [string, 'udp' | 'tcp'][] = [
      ['garbage.faults.test', 'udp'],
      ['wrongid.faults.test', 'tcp'],
      ['halfreset.faults.test', 'tcp'],
    ];
    for (const [name, transport] of cases) {
      const reply = transport === 'udp' ? await udpAsk(two.dnsPort, query(name), 3000) : await tcpAsk(two.dnsPort, query(name), 3000);
      assert.deepEqual(addressesOf(reply), ['203.0.113.51'], `${name} over ${transport}: the second upstream's answer`);
    }
    assert.equal(two.process.child.exitCode, null, 'still running');
  });
});
