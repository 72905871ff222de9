// DNS over TLS and over HTTPS as clients use them: dig and kdig (+tls, +https,
// +https-get) and node's own tls, http2 and https clients against `divert serve
// --listen-tls --listen-https` on loopback, with a certificate made by openssl for the
// test. What must hold: an intercepted name is answered from the table; a forwarded one
// arrives as the upstream sent it but for the ID (0 stays 0 over DoH); a client outside
// --allow gets REFUSED and nothing reaches the upstream; what is not a DoH query gets its
// 4xx and the server answers on; /metrics and /healthz show the transports, listeners and
// the certificate. With one process, and with two workers (workers.dot-doh.test.ts).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { lengthPrefix } from '../src/transport/tcp-framer.js';
import { decode, query, startDivert, tcpAsk, TEST_WORKERS, withoutId, type TestServer } from './helpers/divert.js';
import { execChild } from './helpers/children.js';
import { parseMetrics, sumOf } from './helpers/metrics.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  certFolder,
  dotAsk,
  dotSession,
  getPath,
  type DotSession,
  h1Request,
  h2Request,
  makeCert,
  post,
  type CertFiles,
  type DohRequest,
  type HttpReply,
} from './helpers/tls.js';

const INTERCEPTED = 'www.shop.divert.test';
const INTERCEPTED_ADDRESS = '192.0.2.10';
const ZONE = `$ORIGIN shop.divert.test.\n$TTL 30\nwww IN A ${INTERCEPTED_ADDRESS}\n`;
/** Outside --allow (which is 127.0.0.1/32 alone). */
const OUTSIDER = '127.0.0.2';

let upstream: TestUpstream;
let divert: TestServer;
let cert: CertFiles;
let dotPort: number;
let dohPort: number;
let zone: string;
const folder = certFolder();

/** Names under this get 100 A records (some 1.6 kB): over UDP the upstream sends only the header, question and TC. */
const LARGE = 'large.example';

/** Every forwarded name gets two A records, a TXT and an authority NS, with TTLs 300, 120 and 3600. */
function upstreamAnswer(q: Parameters<Parameters<typeof startUpstream>[0]>[0]): Buffer | null | Promise<Buffer> {
  const name = q.packet.questions?.[0]?.name;
  if (name === undefined) return null;
  if (name.startsWith('slow-')) return sleep(300).then(() => replyTo(q));
  if (name.endsWith(LARGE)) {
    if (q.transport === 'udp')
      return replyTo(q, { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.TRUNCATED_RESPONSE });
    const answers = Array.from({ length: 100 }, (_, i) => ({ type: 'A', class: 'IN', name, ttl: 60, data: `198.51.${i >> 8}.${i & 255}` }));
    return replyTo(q, { answers: answers as dnsPacket.Answer[] });
  }
  return replyTo(q, {
    answers: [
      { type: 'A', class: 'IN', name, ttl: 300, data: '198.51.100.7' },
      { type: 'A', class: 'IN', name, ttl: 300, data: '198.51.100.8' },
      { type: 'TXT', class: 'IN', name, ttl: 120, data: 'forwarded as sent' },
    ] as dnsPacket.Answer[],
    authorities: [{ type: 'NS', class: 'IN', name: 'example', ttl: 3600, data: 'ns.example' }] as dnsPacket.Answer[],
  });
}

/** The bytes the upstream sent for `name` (each test asks for a name of its own). */
function upstreamSent(name: string): Buffer {
  const sent = upstream.sent.filter((bytes) => dnsPacket.decode(bytes).questions![0].name === name);
  assert.equal(sent.length, 1, `the upstream answered ${name} ${sent.length} times`);
  return sent[0];
}

before(async () => {
  cert = await makeCert(folder.dir, 'server');
  upstream = await startUpstream(upstreamAnswer);
  zone = join(folder.dir, 'shop.zone');
  writeFileSync(zone, ZONE);
  divert = await startDivert({
    upstream: [`127.0.0.1:${upstream.port}`],
    zones: [zone],
    allow: ['127.0.0.1/32'],
    'listen-tls': ['127.0.0.1:0'],
    'listen-https': ['127.0.0.1:0'],
    'tls-cert': cert.cert,
    'tls-key': cert.key,
  });
  dotPort = divert.encrypted.dot[0].port;
  dohPort = divert.encrypted.doh[0].port;
});

after(async () => {
  await divert?.close();
  await upstream?.close();
  folder.remove();
});

/** dig or kdig's output without what differs from run to run (ID, timing, server line, transport). */
function core(output: string): string {
  return output
    .split('\n')
    .filter(
      (line) =>
        line.trim() !== '' &&
        !/^;; (Query time|SERVER|WHEN|MSG SIZE|TLS session|HTTP session|Received|Time|From)|^; <<>>|^;; global options|^; \(\d server found\)/.test(
          line,
        ),
    )
    .join('\n')
    .replace(/id: \d+/, 'id: N');
}

const DIG = ['@127.0.0.1', '+time=3', '+tries=1', '+nocookie'];
const dig = async (args: string[]) => (await execChild('dig', [...DIG, ...args])).stdout;
const kdig = async (args: string[]) => (await execChild('kdig', ['@127.0.0.1', '+time=3', '+retry=0', ...args])).stdout;

/** The encrypted ways dig and kdig ask divert, each with its port. */
const clients = (): [string, () => string[], (args: string[]) => Promise<string>][] => [
  ['dig +tls', () => ['+tls', '-p', String(dotPort)], dig],
  ['kdig +tls', () => ['+tls', '-p', String(dotPort)], kdig],
  ['dig +https (POST)', () => ['+https', '-p', String(dohPort)], dig],
  ['dig +https-get', () => ['+https-get', '-p', String(dohPort)], dig],
  ['kdig +https', () => ['+https', '-p', String(dohPort)], kdig],
];

describe('dig and kdig over DoT and DoH', () => {
  test('an intercepted name is answered from the table', async () => {
    for (const [label, args, run] of clients()) {
      const out = await run([...args(), INTERCEPTED, 'A']);
      assert.match(out, /status: NOERROR/, `${label}: ${out}`);
      assert.match(
        out,
        new RegExp(`${INTERCEPTED.replace(/\./g, '\\.')}\\.\\s+30\\s+IN\\s+A\\s+${INTERCEPTED_ADDRESS.replace(/\./g, '\\.')}`),
        `${label}: ${out}`,
      );
    }
    assert.equal(upstream.queries.filter((q) => q.packet.questions?.[0]?.name === INTERCEPTED).length, 0, 'the upstream was asked');
  });

  test('a forwarded name: the reply is what the upstream gives when asked directly', async () => {
    for (const [i, [label, args, run]] of clients().entries()) {
      const name = `fwd-${i}.example`;
      const direct = core(await run(['-p', String(upstream.port), '+tcp', name, 'A']));
      const through = core(await run([...args(), name, 'A']));
      assert.match(through, /198\.51\.100\.7/, `${label}: ${through}`);
      assert.equal(through, direct, `${label}: divert's reply differs from the upstream's`);
    }
  });

  test(`a client outside --allow (${OUTSIDER}) gets REFUSED, and nothing reaches the upstream`, async () => {
    const name = 'outsider.example';
    for (const [label, args, run] of clients()) {
      const out = await run(['-b', OUTSIDER, ...args(), name, 'A']);
      assert.match(out, /status: REFUSED/, `${label}: ${out}`);
    }
    assert.equal(upstream.queries.filter((q) => q.packet.questions?.[0]?.name === name).length, 0);
  });
});

describe('node clients: bytes', () => {
  test("DoT: a forwarded reply is the upstream bytes but for the ID, which is the query's", async () => {
    const q = query('bytes-dot.example', 'A');
    const { reply, fingerprint256 } = await dotAsk(dotPort, q);
    assert.equal(fingerprint256, cert.fingerprint256);
    assert.equal(reply.readUInt16BE(0), q.readUInt16BE(0));
    assert.deepEqual(withoutId(reply), withoutId(upstreamSent('bytes-dot.example')));
  });

  const doh: [string, (port: number, r: DohRequest) => Promise<HttpReply>][] = [
    ['HTTP/2', h2Request],
    ['HTTP/1.1', h1Request],
  ];
  for (const [version, request] of doh) {
    for (const method of ['GET', 'POST'] as const) {
      test(`DoH ${version} ${method}: ID 0 comes back 0, the rest as the upstream sent it; an intercepted name from the table`, async () => {
        const name = `bytes-${version.replace(/\W/g, '')}-${method}.example`.toLowerCase();
        const q = query(name, 'A', { id: 0 });
        const reply = await request(dohPort, method === 'GET' ? { path: getPath(q) } : post(q));
        assert.equal(reply.status, 200, reply.body.toString());
        assert.equal(reply.headers['content-type'], 'application/dns-message');
        assert.equal(reply.headers['cache-control'], 'max-age=120', 'the least TTL of the reply');
        assert.equal(reply.body.readUInt16BE(0), 0);
        assert.deepEqual(withoutId(reply.body), withoutId(upstreamSent(name)));

        const mine = query(INTERCEPTED, 'A', { id: 0 });
        const answered = await request(dohPort, method === 'GET' ? { path: getPath(mine) } : post(mine));
        const packet = decode(answered.body);
        assert.equal(packet.id, 0);
        assert.deepEqual(
          packet.answers!.map((a) => (a as { data: unknown }).data),
          [INTERCEPTED_ADDRESS],
        );
        assert.equal(answered.headers['cache-control'], 'max-age=30');
      });
    }

    test(`DoH ${version}: a client outside --allow gets REFUSED`, async () => {
      const reply = await request(dohPort, post(query('outsider-node.example', 'A', { id: 0 }), OUTSIDER));
      assert.equal(reply.status, 200);
      assert.equal(decode(reply.body).rcode, 'REFUSED');
    });

    test(`DoH ${version}: what is not a DoH query gets its 4xx, and the server answers on`, async () => {
      const good = query(INTERCEPTED, 'A', { id: 0 });
      const cases: [string, DohRequest, number][] = [
        ['bad base64url', { path: '/dns-query?dns=!!not*base64' }, 400],
        ['base64 with padding', { path: `/dns-query?dns=${good.toString('base64')}=` }, 400],
        ['no dns parameter', { path: '/dns-query' }, 400],
        // a QUERY whose one question runs off the end (0xff is no label length); other opcodes are forwarded, as over UDP
        ['a body that is not a DNS query', { ...post(Buffer.from('1234010000010000000000003f0a66', 'hex')) }, 400],
        ['text', { ...post(Buffer.from('not DNS')) }, 400],
        ['a body too short for a header', { ...post(Buffer.from([1, 2, 3])) }, 400],
        ['a DNS response, not a query', { ...post(Buffer.from(upstreamSent('bytes-dot.example'))) }, 400],
        ['the wrong content type', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: good }, 415],
        ['no content type', { method: 'POST', body: good }, 415],
        ['a body over 65535 bytes', { ...post(Buffer.alloc(70_000, 7)) }, 413],
        ['another method', { method: 'PUT', headers: { 'content-type': 'application/dns-message' }, body: good }, 405],
        ['another path', { path: '/resolve?name=example.com' }, 404],
      ];
      for (const [what, req, status] of cases) {
        const reply = await request(dohPort, req);
        assert.equal(reply.status, status, `${what}: ${reply.status} ${reply.body.toString()}`);
      }
      const after = await request(dohPort, post(good));
      assert.equal(after.status, 200);
      assert.deepEqual(
        decode(after.body).answers!.map((a) => (a as { data: unknown }).data),
        [INTERCEPTED_ADDRESS],
      );
    });
  }
});

describe('clients that leave before their answer', () => {
  test('HTTP/2 streams reset, a session destroyed and an HTTP/1.1 connection closed while their queries are forwarded: the server answers on', async () => {
    const session = http2Connect(`https://127.0.0.1:${dohPort}`, { rejectUnauthorized: false });
    session.on('error', () => {});
    for (let i = 0; i < 20; i++) {
      const stream = session.request({ ':method': 'GET', ':path': getPath(query(`slow-reset-${i}.example`, 'A', { id: 0 })) });
      stream.on('error', () => {});
      stream.end();
      if (i % 2 === 0) setTimeout(() => stream.close(), 50);
    }
    await sleep(100);
    session.destroy();
    const h1 = tlsConnect({ host: '127.0.0.1', port: dohPort, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    h1.on('error', () => {});
    await new Promise((resolve) => h1.once('secureConnect', resolve));
    h1.write(`GET ${getPath(query('slow-h1.example', 'A', { id: 0 }))} HTTP/1.1\r\nhost: divert\r\n\r\n`);
    await sleep(50);
    h1.destroy();
    await sleep(400); // the upstream's answers arrive with nobody to take them
    // and the two connections are let go, not held (each held a slot of the client's cap)
    assert.equal((await openOnce({ doh: 0 }, 2000)).doh, 0, 'a DoH connection whose client left is still open');
    for (const request of [h2Request, h1Request]) {
      const reply = await request(dohPort, post(query(INTERCEPTED, 'A', { id: 0 })));
      assert.equal(reply.status, 200);
      assert.deepEqual(addressesOf(reply.body), [INTERCEPTED_ADDRESS]);
    }
  });
});

describe('forwarding for DoT and DoH clients: over UDP, over TCP when truncated', () => {
  /** The transports the upstream was asked `name` over, in order. */
  const askedOver = (name: string) => upstream.queries.filter((q) => q.packet.questions?.[0]?.name === name).map((q) => q.transport);

  test('an ordinary forwarded query goes up over UDP alone, from DoT and DoH (HTTP/2, HTTP/1.1) alike', async () => {
    await dotAsk(dotPort, query('udp-dot.example', 'A'));
    await h2Request(dohPort, { path: getPath(query('udp-h2.example', 'A', { id: 0 })) });
    await h1Request(dohPort, post(query('udp-h1.example', 'A', { id: 0 })));
    for (const name of ['udp-dot.example', 'udp-h2.example', 'udp-h1.example']) assert.deepEqual(askedOver(name), ['udp'], name);
  });

  test('a reply truncated over UDP is asked again over TCP and reaches the DoT and DoH client whole', async () => {
    const ask: [string, (q: Buffer) => Promise<Buffer>][] = [
      ['dot', async (q) => (await dotAsk(dotPort, q)).reply],
      ['h2', async (q) => (await h2Request(dohPort, { path: getPath(q) })).body],
      ['h1', async (q) => (await h1Request(dohPort, post(q))).body],
    ];
    for (const [label, send] of ask) {
      const name = `${label}.${LARGE}`;
      const reply = await send(query(name, 'A', { id: label === 'dot' ? 4242 : 0 }));
      const packet = decode(reply);
      assert.equal(packet.flags! & dnsPacket.TRUNCATED_RESPONSE, 0, `${label}: TC set`);
      assert.equal(packet.answers!.length, 100, label);
      assert.deepEqual(withoutId(reply), withoutId(upstream.sent.at(-1)!), `${label}: not the upstream's TCP reply`);
      assert.deepEqual(askedOver(name), ['udp', 'tcp'], label);
    }
  });

  test('a plain TCP client is forwarded over TCP as before', async () => {
    assert.deepEqual(addressesOf(await tcpAsk(divert.port, query('tcp-client.example', 'A'))).slice(0, 2), [
      '198.51.100.7',
      '198.51.100.8',
    ]);
    assert.deepEqual(askedOver('tcp-client.example'), ['tcp']);
  });
});

describe('/metrics and /healthz', () => {
  test('queries counted with transport="dot" and "doh"; each listener and the certificate\'s expiry shown', async () => {
    await dotAsk(dotPort, query(INTERCEPTED, 'A'));
    await h2Request(dohPort, post(query(INTERCEPTED, 'A', { id: 0 })));
    const metrics = parseMetrics(await (await divert.api('/metrics')).text());
    assert.ok(sumOf(metrics, 'divert_queries_total', { transport: 'dot' }) >= 1);
    assert.ok(sumOf(metrics, 'divert_queries_total', { transport: 'doh' }) >= 1);
    assert.equal(sumOf(metrics, 'divert_listener_info', { transport: 'dot', address: `127.0.0.1:${dotPort}` }), 1);
    assert.equal(sumOf(metrics, 'divert_listener_info', { transport: 'doh', address: `127.0.0.1:${dohPort}` }), 1);
    const { X509Certificate } = await import('node:crypto');
    const { readFileSync } = await import('node:fs');
    const notAfter = new Date(new X509Certificate(readFileSync(cert.cert)).validTo).getTime() / 1000;
    assert.equal(sumOf(metrics, 'divert_tls_certificate_expiry_seconds'), notAfter);

    const health = (await (await divert.api('/healthz')).json()) as {
      listeners: { transport: string; address: string }[];
      tlsCertificate: { fingerprint256: string; notAfter: string };
    };
    assert.deepEqual(
      health.listeners.filter((l) => l.transport === 'dot' || l.transport === 'doh'),
      [
        { transport: 'dot', address: `127.0.0.1:${dotPort}` },
        { transport: 'doh', address: `127.0.0.1:${dohPort}` },
      ],
    );
    assert.equal(health.tlsCertificate.fingerprint256, cert.fingerprint256);
    assert.equal(new Date(health.tlsCertificate.notAfter).getTime() / 1000, notAfter);
  });

  test("a DoH client that closes its connection without HTTP/2's GOAWAY (dig +https exits) frees it at once, not after the idle timeout", async () => {
    assert.equal((await openOnce({ doh: 0 }, 12_000)).doh, 0, 'DoH connections of earlier tests still open after the idle timeout');
    assert.match(await dig(['+https', '-p', String(dohPort), INTERCEPTED, 'A']), new RegExp(INTERCEPTED_ADDRESS.replace(/\./g, '\\.')));
    // the idle timeout is 10 s: well before it
    assert.equal((await openOnce({ doh: 0 }, 2000)).doh, 0, 'the connection dig left is still open 2 s after it exited');
  });

  test('connections open now, by worker and transport: three DoT, one HTTP/2 and one plain TCP counted while open, none once closed', async () => {
    // what earlier tests opened has closed
    assert.deepEqual(await openOnce({ tcp: 0, dot: 0, doh: 0 }, 5000), { tcp: 0, dot: 0, doh: 0, workers: Number(TEST_WORKERS) });
    const dot = await Promise.all([dotSession(dotPort), dotSession(dotPort), dotSession(dotPort)]);
    const h2 = http2Connect(`https://127.0.0.1:${dohPort}`, { rejectUnauthorized: false });
    h2.on('error', () => {});
    const h2Up = new Promise((resolve) => h2.once('connect', resolve));
    const tcp = connect({ host: '127.0.0.1', port: divert.port });
    tcp.on('error', () => {});
    const tcpUp = new Promise((resolve) => tcp.once('connect', resolve));
    try {
      await Promise.all([h2Up, tcpUp]);
      // each DoT session and the HTTP/2 one asks once, as a client does
      for (const session of dot) assert.deepEqual(addressesOf(await session.ask(query(INTERCEPTED, 'A'))), [INTERCEPTED_ADDRESS]);
      const stream = h2.request({ ':method': 'GET', ':path': getPath(query(INTERCEPTED, 'A', { id: 0 })) });
      stream.end();
      const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
      assert.equal(headers[':status'], 200);
      stream.resume();
      await once(stream, 'end');
      assert.deepEqual(await openOnce({ tcp: 1, dot: 3, doh: 1 }, 5000), { tcp: 1, dot: 3, doh: 1, workers: Number(TEST_WORKERS) });
    } finally {
      for (const session of dot) session.close();
      h2.destroy();
      tcp.destroy();
    }
    assert.partialDeepStrictEqual(await openOnce({ tcp: 0, dot: 0, doh: 0 }, 5000), { tcp: 0, dot: 0, doh: 0 });
  });
});

describe('what a peer may hold: the TCP limits on DoT and DoH connections', () => {
  let limited: TestServer;
  const IDLE_MS = 400;
  before(async () => {
    limited = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      zones: [zone],
      'listen-tls': ['127.0.0.1:0'],
      'listen-https': ['127.0.0.1:0'],
      'tls-cert': cert.cert,
      'tls-key': cert.key,
      'tcp-idle-timeout-ms': String(IDLE_MS),
      'tcp-max-per-client': '2',
    });
  });
  after(() => limited?.close());

  /** Resolves with how long `socket` stayed open, or rejects when it is still open after `withinMs`. */
  const closedWithin = (socket: Socket | TLSSocket, withinMs: number) =>
    new Promise<number>((resolve, reject) => {
      const started = Date.now();
      if (socket.destroyed) return resolve(0);
      const timer = setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(Date.now() - started);
      });
    });

  test('a connection that never begins its TLS handshake, and one that speaks plain DNS, are closed', async () => {
    const silent = connect({ host: '127.0.0.1', port: limited.encrypted.dot[0].port });
    silent.on('error', () => {});
    await closedWithin(silent, 5000);
    const plain = connect({ host: '127.0.0.1', port: limited.encrypted.dot[0].port });
    plain.on('error', () => {});
    const q = query(INTERCEPTED, 'A');
    plain.write(Buffer.concat([lengthPrefix(q), q]));
    await closedWithin(plain, 5000);
  });

  test('an idle DoT connection and an idle HTTP/2 session are closed after --tcp-idle-timeout-ms', async () => {
    const session = await dotSession(limited.encrypted.dot[0].port);
    assert.deepEqual(addressesOf(await session.ask(query(INTERCEPTED, 'A'))), [INTERCEPTED_ADDRESS]);
    const dotOpen = await closedWithin(session.socket, 5000);
    assert.ok(dotOpen >= IDLE_MS - 50, `closed after ${dotOpen} ms`);

    const h2 = http2Connect(`https://127.0.0.1:${limited.encrypted.doh[0].port}`, { rejectUnauthorized: false });
    h2.on('error', () => {});
    const h2Closed = new Promise<void>((resolve) => h2.once('close', () => resolve()));
    const stream = h2.request({ ':method': 'GET', ':path': getPath(query(INTERCEPTED, 'A', { id: 0 })) });
    stream.resume();
    stream.end();
    await Promise.race([h2Closed, sleep(5000).then(() => assert.fail('the HTTP/2 session is still open after 5 s'))]);
    h2.destroy();
  });

  test('HTTP/1.1: a client that dribbles its headers (a line every 100 ms) is closed after --tcp-idle-timeout-ms; keep-alive requests go on', async () => {
    const port = limited.encrypted.doh[0].port;
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    socket.write(`GET ${getPath(query(INTERCEPTED, 'A', { id: 0 }))} HTTP/1.1\r\n`);
    let lines = 0;
    const dribble = setInterval(() => socket.write(`x-dribble-${lines++}: 1\r\n`), 100);
    try {
      const open = await closedWithin(socket, 5000);
      assert.ok(open >= IDLE_MS - 50, `closed after ${open} ms`);
      assert.ok(lines >= 2, `only ${lines} header lines were sent`);
    } finally {
      clearInterval(dribble);
    }

    // a connection that keeps asking is not cut by it: requests a quarter of the timeout apart, on one connection, past it
    const keepAlive = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    keepAlive.on('error', () => {});
    await new Promise((resolve) => keepAlive.once('secureConnect', resolve));
    let answers = 0;
    keepAlive.on('data', (chunk: Buffer) => (answers += chunk.toString('latin1').split('HTTP/1.1 200').length - 1));
    for (let i = 0; i < 6; i++) {
      keepAlive.write(`GET ${getPath(query(INTERCEPTED, 'A', { id: 0 }))} HTTP/1.1\r\nhost: divert\r\n\r\n`);
      await sleep(IDLE_MS / 4);
    }
    assert.equal(keepAlive.destroyed, false, 'the keep-alive connection was closed');
    assert.equal(answers, 6);
    keepAlive.destroy();
  });

  test('connections from one client network beyond --tcp-max-per-client are reset at accept, on each listener', async () => {
    const port = limited.encrypted.dot[0].port;
    // the cap is per worker, and the kernel hands each connection to one: with W workers the
    // (2W + 1)th connection held open at once is refused at the latest
    const open: DotSession[] = [];
    let refused: Error | undefined;
    try {
      for (let i = 0; i < 2 * Number(TEST_WORKERS) + 1 && !refused; i++) {
        await dotSession(port).then(
          (session) => open.push(session),
          (err: Error) => (refused = err),
        );
      }
      assert.ok(open.length >= 2, `${open.length} connections admitted`);
      assert.match(refused?.message ?? 'none refused', /closed before its handshake|ECONNRESET|socket hang up/);
      // another listener counts its own
      const reply = await h2Request(limited.encrypted.doh[0].port, post(query(INTERCEPTED, 'A', { id: 0 })));
      assert.equal(reply.status, 200);
      const metrics = parseMetrics(await (await limited.api('/metrics')).text());
      assert.ok(sumOf(metrics, 'divert_listener_events_total', { listener: 'dns', event: 'tcp_client_limit' }) >= 1);
    } finally {
      for (const session of open) session.close();
    }
  });
});

/** divert's open TCP, DoT and DoH connections (summed over the workers), and how many workers report them. */
async function openConnections(): Promise<{ tcp: number; dot: number; doh: number; workers: number }> {
  const metrics = parseMetrics(await (await divert.api('/metrics')).text());
  const of = (transport: string) => sumOf(metrics, 'divert_worker_open_connections', { transport });
  const workers = new Set(metrics.filter((m) => m.name === 'divert_worker_open_connections').map((m) => m.labels.worker));
  return { tcp: of('tcp'), dot: of('dot'), doh: of('doh'), workers: workers.size };
}

/** The open connections once those named in `want` are as given, or when `ms` have passed. */
async function openOnce(want: Partial<Record<'tcp' | 'dot' | 'doh', number>>, ms: number): ReturnType<typeof openConnections> {
  const deadline = Date.now() + ms;
  const reached = (got: Awaited<ReturnType<typeof openConnections>>) =>
    Object.entries(want).every(([transport, n]) => got[transport as keyof typeof want] === n);
  let got = await openConnections();
  while (!reached(got) && Date.now() < deadline) {
    await sleep(50);
    got = await openConnections();
  }
  return got;
}

function addressesOf(reply: Buffer): unknown[] {
  return (decode(reply).answers ?? []).map((a) => (a as { data: unknown }).data);
}
