// DNS over TLS to the upstream (--upstream tls://HOST[:PORT][#NAME], --upstream-ca), against
// a real DoT server on loopback (dnsdist terminating TLS in front of NSD; helpers/dot-server.ts):
// answers arrive unchanged but for the ID whatever transport the client used, queries are
// pipelined on reused connections, a certificate with the wrong name or from an untrusted
// CA is refused (SERVFAIL, a log line naming the TLS error, nothing crashes), the
// upstream's restart is survived, and a mixed list of plain and DoT upstreams answers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { decode, query, startDivert, tcpAsk, tcpSession, udpAsk, withoutId, type LogSink, type TestServer } from './helpers/divert.js';
import { missingDotTools, startDotServer, type DotServer } from './helpers/dot-server.js';
import { sumOf } from './helpers/metrics.js';
import { loadServeConfig } from '../src/config/load.js';
import { freePort } from './helpers/redis.js';
import { tlsDial } from '../src/upstream/stream-dial.js';

const missing = await missingDotTools();

/** An OPT record offering `size` bytes over UDP. */
const opt = (size: number) => ({ type: 'OPT', name: '.', udpPayloadSize: size }) as unknown as dnsPacket.Answer;
const truncated = (reply: Buffer | null) => reply !== null && (reply.readUInt16BE(2) & 0x0200) !== 0;

/** Fast failure, so that refusals and the restart are seen quickly. */
const TIMEOUTS = { 'upstream-timeout-ms': 300, 'query-timeout-ms': 1500 };

/** A JSON log kept in memory, for the lines a test looks for. */
function logLines(): LogSink & { lines: string[]; find(pattern: RegExp): Record<string, unknown> | undefined } {
  const lines: string[] = [];
  return {
    lines,
    write: (line) => void lines.push(line),
    find: (pattern) => {
      const line = lines.find((l) => pattern.test(l));
      return line === undefined ? undefined : (JSON.parse(line) as Record<string, unknown>);
    },
  };
}

/** A TCP relay on loopback in front of `port` that counts the connections made through it. */
async function countingRelay(port: number): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    count++;
    const target = connect({ host: '127.0.0.1', port });
    for (const s of [client, target]) {
      open.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        open.delete(s);
        client.destroy();
        target.destroy();
      });
    }
    client.pipe(target);
    target.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    connections: () => count,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `answer` until it gives a NOERROR reply, for at most timeoutMs; how long it took. */
async function untilAnswered(ask: () => Promise<Buffer | null>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const reply = await ask().catch(() => null);
    if (reply && decode(reply).rcode === 'NOERROR') return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`no NOERROR answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('DNS over TLS to the upstream', () => {
  let dot: DotServer;
  const servers: TestServer[] = [];
  const start = async (options: Record<string, unknown>, logStream?: LogSink) => {
    const server = await startDivert({ workers: 1, ...TIMEOUTS, ...options }, logStream ? { logStream } : {});
    servers.push(server);
    return server;
  };

  before(async () => {
    // not skipped: a missing tool fails the suite with what to install (.ci/run installs them)
    if (missing.length > 0) throw new Error(`the DoT upstream tests need ${missing.join(', ')}: apt-get install -y ${missing.join(' ')}`);
    dot = await startDotServer();
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await dot?.stop();
  });

  test('answers come back as NSD sends them but for the ID, for queries over UDP and over TCP', async () => {
    const divert = await start({ upstream: [`tls://127.0.0.1:${dot.dotPort}`], 'upstream-ca': dot.caFile });
    const asked: [string, string][] = [
      ['www.dot.test', 'A'],
      ['www.dot.test', 'AAAA'],
      ['txt.dot.test', 'TXT'],
      ['nothing.dot.test', 'A'], // NXDOMAIN with the SOA
      ['dot.test', 'NS'],
    ];
    for (const [name, type] of asked) {
      for (const edns of [false, true]) {
        const fields = edns ? { additionals: [opt(1232)] } : {};
        const direct = await tcpAsk(dot.nsdPort, query(name, type, fields));
        const overUdp = await udpAsk(divert.port, query(name, type, fields));
        const overTcp = await tcpAsk(divert.port, query(name, type, fields));
        assert.ok(overUdp, `${name} ${type}: no UDP reply`);
        assert.deepEqual(withoutId(overUdp), withoutId(direct), `${name} ${type} (EDNS ${edns}) over UDP`);
        assert.deepEqual(withoutId(overTcp), withoutId(direct), `${name} ${type} (EDNS ${edns}) over TCP`);
      }
    }
    // the ID is the client's own
    const q = query('www.dot.test');
    const reply = await udpAsk(divert.port, q);
    assert.equal(reply!.readUInt16BE(0), q.readUInt16BE(0));
  });

  test('a reply too large for the UDP client goes back truncated (TC), whole over TCP', async () => {
    const divert = await start({ upstream: [`tls://127.0.0.1:${dot.dotPort}#dot.test`], 'upstream-ca': dot.caFile });
    const direct = await tcpAsk(dot.nsdPort, query('big.dot.test', 'TXT'));
    assert.ok(direct.length > 1232, `the big answer is ${direct.length} bytes`);
    const plain = await udpAsk(divert.port, query('big.dot.test', 'TXT'));
    assert.ok(truncated(plain));
    assert.equal(decode(plain).answers?.length, 0);
    assert.equal(decode(plain).questions?.[0]?.name, 'big.dot.test');
    // an EDNS client offering 4096 still gets no more than --max-udp-size (1232)
    const offered = await udpAsk(divert.port, query('big.dot.test', 'TXT', { additionals: [opt(4096)] }));
    assert.ok(offered!.length <= 1232);
    assert.ok(truncated(offered));
    assert.deepEqual(withoutId(await tcpAsk(divert.port, query('big.dot.test', 'TXT'))), withoutId(direct));
  });

  test('queries are pipelined on a few reused connections; figures and /healthz carry tls://', async () => {
    const relay = await countingRelay(dot.dotPort);
    try {
      const label = `tls://127.0.0.1:${relay.port}`;
      const divert = await start({ upstream: [label], 'upstream-ca': dot.caFile });
      const round = async () => {
        const session = tcpSession(divert.port);
        const names = Array.from({ length: 20 }, (_, i) => query(i % 2 ? 'www.dot.test' : 'txt.dot.test', i % 2 ? 'A' : 'TXT'));
        // 20 at once on one client connection, and 20 over UDP at the same time
        for (const q of names) session.send(q);
        const overUdp = await Promise.all(names.map((q) => udpAsk(divert.port, q)));
        const overTcp = await session.waitFor(20, 5000);
        session.close();
        for (const r of [...overUdp, ...overTcp]) assert.equal(decode(r).rcode, 'NOERROR');
      };
      await round();
      const first = relay.connections();
      assert.ok(first >= 1 && first <= 4, `40 queries at once took ${first} connections (at most 4 per upstream)`);
      await round();
      await round();
      assert.equal(relay.connections(), first, 'later rounds reuse the open connections');

      const metrics = await (await divert.api('/metrics')).text();
      assert.ok(sumOf(metrics, 'divert_upstream_attempts_total', { upstream: label, result: 'answered' }) >= 120);
      assert.equal(sumOf(metrics, 'divert_upstream_up', { upstream: label }), 1);
      const health = (await (await divert.api('/healthz')).json()) as { upstreams: { upstream: string; up: boolean }[] };
      assert.deepEqual(
        health.upstreams.map((u) => [u.upstream, u.up]),
        [[label, true]],
      );
    } finally {
      await relay.close();
    }
  });

  for (const [what, spec, ca, error] of [
    ['a certificate without the name asked for (#wrong.name)', '#wrong.name', 'own', /ERR_TLS_CERT_ALTNAME_INVALID|altnames/],
    ['a certificate from a CA not in --upstream-ca', '#dot.test', 'other', /SELF_SIGNED|self.signed|unable to verify/i],
    ['a certificate from no system CA (no --upstream-ca)', '#dot.test', 'none', /SELF_SIGNED|self.signed|unable to verify/i],
  ] as const) {
    test(`${what} is refused: SERVFAIL, a log line naming the TLS error, the server keeps serving`, async () => {
      const log = logLines();
      const caFile = { own: dot.caFile, other: dot.otherCaFile, none: undefined }[ca];
      const divert = await start(
        { upstream: [`tls://127.0.0.1:${dot.dotPort}${spec}`], ...(caFile ? { 'upstream-ca': caFile } : {}), 'log-level': 'warn' },
        log,
      );
      assert.equal(decode(await udpAsk(divert.port, query('www.dot.test'))).rcode, 'SERVFAIL');
      assert.equal(decode(await tcpAsk(divert.port, query('www.dot.test'))).rcode, 'SERVFAIL');
      const line = log.find(/connection failed/);
      assert.ok(line, `no connection failure logged; log: ${log.lines.join('')}`);
      assert.match(`${String(line.err)} ${String(line.code)}`, error);
      assert.equal(line.upstream, `tls://127.0.0.1:${dot.dotPort}${spec}`);
      // still alive: the admin API answers, and says the upstream is not answering
      const health = (await (await divert.api('/healthz')).json()) as { upstreams: { up: boolean; failed: number }[] };
      assert.ok(health.upstreams[0].failed >= 2);
    });
  }

  test('with 2 workers, each forwards over DoT with the CAs of --upstream-ca', async () => {
    const divert = await start({ workers: 2, upstream: [`tls://127.0.0.1:${dot.dotPort}#dot.test`], 'upstream-ca': dot.caFile });
    const direct = await tcpAsk(dot.nsdPort, query('www.dot.test'));
    // each worker's own query path, without a socket, then many queries over the shared listeners
    const probed = await divert.debug.probe(query('www.dot.test'));
    assert.equal(probed.length, 2);
    for (const result of probed) assert.deepEqual(withoutId(result!.reply!), withoutId(direct));
    const replies = await Promise.all(Array.from({ length: 20 }, () => udpAsk(divert.port, query('www.dot.test'))));
    for (const reply of replies) assert.deepEqual(withoutId(reply!), withoutId(direct));
  });

  test('a reload reads --upstream-ca again: a CA file rewritten in place applies to new connections', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'divert-dot-reload-'));
    try {
      const caFile = join(dir, 'upstream-ca.pem');
      copyFileSync(dot.otherCaFile, caFile);
      const flags = {
        workers: 1,
        'log-level': 'silent',
        ...TIMEOUTS,
        upstream: [`tls://127.0.0.1:${dot.dotPort}#dot.test`],
        'upstream-ca': caFile,
      };
      const divert = await startDivert(flags, { reloadConfig: () => loadServeConfig(flags, {}) });
      servers.push(divert);
      assert.equal(decode(await udpAsk(divert.port, query('www.dot.test'))).rcode, 'SERVFAIL');
      copyFileSync(dot.caFile, caFile);
      const result = await divert.reload();
      assert.ok(result.ok, JSON.stringify(result));
      assert.ok(
        result.ok && result.changed.includes('new CA certificates of the tls:// upstreams (--upstream-ca)'),
        JSON.stringify(result),
      );
      await untilAnswered(() => udpAsk(divert.port, query('www.dot.test'), 2000), 5_000);
      // a CA file that no longer parses is refused whole; the server keeps the CAs it has
      writeFileSync(caFile, 'garbage\n');
      const refused = await divert.reload();
      assert.equal(refused.ok, false);
      assert.match(refused.ok ? '' : refused.error, /--upstream-ca ".*": holds no PEM certificate/);
      assert.equal(decode(await tcpAsk(divert.port, query('www.dot.test'))).rcode, 'NOERROR');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the upstream's restart is survived: SERVFAIL while it is down, answers again once it is back", async () => {
    const divert = await start({ upstream: [`tls://127.0.0.1:${dot.dotPort}`], 'upstream-ca': dot.caFile });
    assert.equal(decode(await udpAsk(divert.port, query('www.dot.test'))).rcode, 'NOERROR');
    await dot.stopDot();
    try {
      assert.equal(decode(await udpAsk(divert.port, query('www.dot.test'))).rcode, 'SERVFAIL');
      assert.equal(decode(await tcpAsk(divert.port, query('www.dot.test'))).rcode, 'SERVFAIL');
    } finally {
      await dot.startDot();
    }
    // back-off may hold the upstream for up to its period; within a few seconds it answers
    await untilAnswered(() => udpAsk(divert.port, query('www.dot.test'), 2000), 10_000);
    await untilAnswered(() => tcpAsk(divert.port, query('www.dot.test'), 2000), 10_000);
  });

  test('a mixed list answers: a dead plain upstream before a DoT one, and a dead DoT one before a plain one', async () => {
    const dead = await freePort(); // nothing listens there: UDP and TCP are refused
    const plainFirst = await start({
      upstream: [`127.0.0.1:${dead}`, `tls://127.0.0.1:${dot.dotPort}#dot.test`],
      'upstream-ca': dot.caFile,
    });
    const dotFirst = await start({ upstream: [`tls://127.0.0.1:${dead}`, `127.0.0.1:${dot.nsdPort}`], 'upstream-ca': dot.caFile });
    for (const divert of [plainFirst, dotFirst]) {
      for (let i = 0; i < 3; i++) {
        assert.equal(decode(await udpAsk(divert.port, query('www.dot.test'))).rcode, 'NOERROR');
        assert.equal(decode(await tcpAsk(divert.port, query('www.dot.test'))).rcode, 'NOERROR');
      }
    }
    const figures = await (await dotFirst.api('/metrics')).text();
    assert.ok(sumOf(figures, 'divert_upstream_attempts_total', { upstream: `127.0.0.1:${dot.nsdPort}`, result: 'answered' }) >= 6);
    assert.ok(sumOf(figures, 'divert_upstream_attempts_total', { upstream: `tls://127.0.0.1:${dead}`, result: 'failed' }) >= 1);
  });
});

describe('a DoT upstream that accepts the connection and never answers the handshake', () => {
  test('the connection fails after the handshake timeout, with the reason reported', async () => {
    const held = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const reasons: Error[] = [];
      const dial = tlsDial(
        { host: '127.0.0.1', port: (silent.address() as { port: number }).port, tls: {} },
        (err) => reasons.push(err),
        200,
      );
      const started = Date.now();
      const socket = dial.open();
      await new Promise<void>((resolve, reject) => {
        socket.once('close', () => resolve());
        setTimeout(() => reject(new Error('still open after 3 s')), 3000).unref();
      });
      const took = Date.now() - started;
      assert.ok(took >= 150 && took < 2000, `closed after ${took} ms`);
      assert.match(reasons.map((r) => r.message).join('; '), /TLS handshake not done within 200 ms/);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
