// The DoH server's own HTTP/2 (src/transport/h2-session.ts) against a raw client that writes
// frames by hand (helpers/h2-raw.ts), on a real `divert serve --listen-https`: what well-kept
// clients seldom send but may (a header block in CONTINUATION frames, padding, a window of a
// few octets, a GET that does not end its stream, more streams than allowed), and what a
// broken or hostile peer sends (each breach ends that connection with GOAWAY and its code,
// and the server answers the next connection). dig, kdig and node's client are in
// dot-doh.test.ts.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { decode, query, startDivert, type TestServer } from './helpers/divert.js';
import { certFolder, h2Request, getPath, makeCert, type CertFiles } from './helpers/tls.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { F, frame, headerBlock, RawH2, settings, T } from './helpers/h2-raw.js';

const NAME = 'www.h2.divert.test';
const ADDRESS = '192.0.2.20';
const ZONE = `$ORIGIN h2.divert.test.\n$TTL 30\nwww IN A ${ADDRESS}\n`;
const PROTOCOL_ERROR = 1;
const FLOW_CONTROL_ERROR = 3;
const FRAME_SIZE_ERROR = 6;
const REFUSED_STREAM = 7;
const COMPRESSION_ERROR = 9;
const ENHANCE_YOUR_CALM = 11;

let upstream: TestUpstream;
let divert: TestServer;
let port: number;
let cert: CertFiles;
const folder = certFolder();
const open: RawH2[] = [];

before(async () => {
  cert = await makeCert(folder.dir, 'h2');
  // forwarded names are answered after 300 ms, so that streams stay open a while; slower- ones after 800 ms
  upstream = await startUpstream((q) => {
    const name = q.packet.questions?.[0]?.name;
    if (name === undefined) return null; // what the fuzzing below sends on
    if (name.startsWith('big-')) {
      // truncated over UDP; over TCP 200 TXT records of 255 octets (some 53 KB)
      if (q.transport === 'udp') return replyTo(q, { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.TRUNCATED_RESPONSE });
      const txt = Array.from({ length: 200 }, () => ({ type: 'TXT', class: 'IN', name, ttl: 60, data: 't'.repeat(255) }));
      return replyTo(q, { answers: txt as dnsPacket.Answer[] });
    }
    const answer = () => replyTo(q, { answers: [{ type: 'A', class: 'IN', name, ttl: 60, data: '198.51.100.9' }] });
    return sleep(name.startsWith('slower-') ? 800 : 300).then(answer);
  });
  const zone = join(folder.dir, 'h2.zone');
  writeFileSync(zone, ZONE);
  divert = await startDivert({
    upstream: [`127.0.0.1:${upstream.port}`],
    zones: [zone],
    'listen-https': ['127.0.0.1:0'],
    'tls-cert': cert.cert,
    'tls-key': cert.key,
  });
  port = divert.encrypted.doh[0].port;
});

after(async () => {
  for (const client of open) client.close();
  await divert?.close();
  await upstream?.close();
  folder.remove();
});

async function client(initial?: Buffer, preface = true): Promise<RawH2> {
  const c = await RawH2.open(port, initial, preface);
  open.push(c);
  return c;
}

const get = (name: string): [string, string][] => [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'divert.test'],
  [':path', getPath(query(name, 'A', { id: 0 }))],
];

/** A DoH POST's head (its body follows in DATA). */
const POST: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'https'],
  [':path', '/dns-query'],
  ['content-type', 'application/dns-message'],
];
const POST_HEAD = headerBlock(POST);

function addresses(body: Buffer): string[] {
  return (decode(body).answers ?? []).map((a) => (a as { data: string }).data);
}

describe('requests written frame by frame', () => {
  test('a header block over HEADERS and two CONTINUATIONs, a padded and prioritised HEADERS, a POST over padded DATA: each answered from the table', async () => {
    const c = await client();
    const block = headerBlock(get(NAME));
    c.send(
      frame(T.HEADERS, F.END_STREAM, 1, block.subarray(0, 10)),
      frame(T.CONTINUATION, 0, 1, block.subarray(10, 30)),
      frame(T.CONTINUATION, F.END_HEADERS, 1, block.subarray(30)),
    );
    // padding length 4, then a priority (dependency 0, weight 16), the block, the padding
    const padded = Buffer.concat([Buffer.from([4]), Buffer.from([0, 0, 0, 0, 16]), block, Buffer.alloc(4)]);
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS | F.PADDED | F.PRIORITY, 3, padded));
    const body = query(NAME, 'A', { id: 0 });
    c.send(
      frame(T.HEADERS, F.END_HEADERS, 5, POST_HEAD),
      frame(T.DATA, F.PADDED, 5, Buffer.concat([Buffer.from([3]), body.subarray(0, 7), Buffer.alloc(3)])),
      frame(T.DATA, F.END_STREAM, 5, body.subarray(7)),
    );
    for (const stream of [1, 3, 5]) {
      const reply = await c.response(stream);
      assert.equal(reply.status, 200, `stream ${stream}`);
      assert.equal(reply.headers['content-type'], 'application/dns-message');
      assert.equal(reply.headers['cache-control'], 'max-age=30');
      assert.equal(Number(reply.headers['content-length']), reply.body.length);
      assert.deepEqual(addresses(reply.body), [ADDRESS], `stream ${stream}`);
    }
    // the server gives back the window the POST's DATA used, padding and its length octet included
    const given = () =>
      c.frames.filter((f) => f.type === T.WINDOW_UPDATE && f.stream === 0).reduce((sum, f) => sum + f.payload.readUInt32BE(0), 0);
    const used = 1 + 7 + 3 + (body.length - 7);
    await c.next(() => given() >= used).catch(() => {});
    assert.equal(given(), used);
  });

  test('a client window of 16 octets: the reply comes in pieces as the client opens it, and whole; PING is answered; a smaller header table gets a size update', async () => {
    // SETTINGS_HEADER_TABLE_SIZE 0, SETTINGS_INITIAL_WINDOW_SIZE 16
    const c = await client(
      settings([
        [1, 0],
        [4, 16],
      ]),
    );
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, headerBlock(get(NAME))));
    const head = await c.next((f) => f.type === T.HEADERS && f.stream === 1);
    assert.equal(head.payload[0], 0x20, 'the block begins with a table size update to 0');
    await c.next((f) => f.type === T.DATA && f.stream === 1);
    await sleep(100);
    const first = c.frames.filter((f) => f.type === T.DATA && f.stream === 1);
    assert.equal(Buffer.concat(first.map((f) => f.payload)).length, 16, 'no more than the window before an update');
    c.send(frame(T.PING, 0, 0, Buffer.from('8 octets')));
    const pong = await c.next((f) => f.type === T.PING);
    assert.equal(pong.flags & F.ACK, F.ACK);
    assert.equal(pong.payload.toString(), '8 octets');
    for (let i = 0; i < 10; i++) {
      const more = Buffer.alloc(4);
      more.writeUInt32BE(16);
      c.send(frame(T.WINDOW_UPDATE, 0, 1, more));
    }
    const reply = await c.response(1);
    assert.equal(reply.status, 200);
    assert.deepEqual(addresses(reply.body), [ADDRESS]);
    assert.ok(reply.frames.filter((f) => f.type === T.DATA).every((f) => f.payload.length <= 16));
  });

  test('a POST whose stream is ended twice (DATA with END_STREAM, then trailers) is reset with STREAM_CLOSED and asked upstream once', async () => {
    const c = await client();
    const name = 'twice-ended.example';
    c.send(
      frame(T.HEADERS, F.END_HEADERS, 1, POST_HEAD),
      frame(T.DATA, F.END_STREAM, 1, query(name, 'A', { id: 0 })),
      frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, headerBlock([['x-trailer', '1']])),
    );
    const reset = await c.next((f) => f.type === T.RST_STREAM && f.stream === 1);
    assert.equal(reset.payload.readUInt32BE(0), 5);
    await sleep(500); // past the upstream's 300 ms
    assert.equal(upstream.queries.filter((q) => q.packet.questions?.[0]?.name === name).length, 1);
    // the connection answers on
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 3, headerBlock(get(NAME))));
    assert.deepEqual(addresses((await c.response(3)).body), [ADDRESS]);
  });

  test('a POST that ends with its headers (no body) gets 400 at once', async () => {
    const c = await client();
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, POST_HEAD));
    assert.equal((await c.response(1)).status, 400);
  });

  test('a client that gives no window: replies are held for it up to 4 MiB, then GOAWAY ENHANCE_YOUR_CALM', async () => {
    const c = await client(settings([[4, 0]]));
    const frames: Buffer[] = [];
    for (let i = 0; i < 95; i++)
      frames.push(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1 + 2 * i, headerBlock(get(`big-${i}.example`))));
    c.send(...frames);
    assert.equal(await c.goaway(10_000), ENHANCE_YOUR_CALM);
    // none of the bodies went out, only heads
    assert.equal(c.frames.filter((f) => f.type === T.DATA).length, 0);
    assert.ok(c.frames.filter((f) => f.type === T.HEADERS).length >= 70);
  });

  test('a GET that does not end its stream is answered, then told to stop with RST_STREAM NO_ERROR', async () => {
    const c = await client();
    c.send(frame(T.HEADERS, F.END_HEADERS, 1, headerBlock(get(NAME))));
    const reply = await c.response(1);
    assert.deepEqual(addresses(reply.body), [ADDRESS]);
    const reset = await c.next((f) => f.type === T.RST_STREAM && f.stream === 1);
    assert.equal(reset.payload.readUInt32BE(0), 0);
  });

  test('101 streams at once: the one past the limit of 100 is refused with REFUSED_STREAM, the 100 others answered', async () => {
    const c = await client();
    const frames: Buffer[] = [];
    for (let i = 0; i < 101; i++)
      frames.push(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1 + 2 * i, headerBlock(get(`many-${i}.example`))));
    c.send(...frames);
    const refused = await c.next((f) => f.type === T.RST_STREAM, 5000, 'RST_STREAM');
    assert.equal(refused.stream, 201);
    assert.equal(refused.payload.readUInt32BE(0), REFUSED_STREAM);
    for (let i = 0; i < 100; i++) assert.deepEqual(addresses((await c.response(1 + 2 * i)).body), ['198.51.100.9']);
  });

  test('a header list over 16 KiB (a big field added to the table, then named five times) gets 431, and the connection answers on', async () => {
    const c = await client();
    const big = headerBlock([['x-big', 'b'.repeat(4000)]], true);
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, Buffer.concat([headerBlock(get(NAME)), big, Buffer.alloc(5, 0x80 | 62)])));
    const refused = await c.response(1);
    assert.equal(refused.status, 431);
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 3, headerBlock(get(NAME))));
    assert.deepEqual(addresses((await c.response(3)).body), [ADDRESS]);
  });
});

test('a client that resets each request before its answer ("rapid reset"): 1,000 pass, then GOAWAY ENHANCE_YOUR_CALM', async () => {
  const c = await client();
  const frames: Buffer[] = [];
  // 2,000 pairs: the allowance refills at 33 a second, so the 1,001st reset is refused unless reading them took 30 s
  for (let i = 0; i < 2000; i++) {
    const id = 1 + 2 * i;
    frames.push(
      frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, id, headerBlock(get(`reset-${i}.example`))),
      frame(T.RST_STREAM, 0, id, Buffer.alloc(4, 0)),
    );
  }
  c.send(...frames);
  assert.equal(await c.goaway(), ENHANCE_YOUR_CALM);
  const last = (await c.next((f) => f.type === T.GOAWAY)).payload.readUInt32BE(0) & 0x7fffffff;
  // the first 1,000 resets passed (stream 1,999 is the 1,000th), and the refusal came well before the 2,000th
  assert.ok(last > 2 * 1000 && last < 2 * 1500, `GOAWAY after stream ${last}`);
});

test('a session found busy when it first falls idle (a query outliving --tcp-idle-timeout-ms) is still closed once idle after its answer', async () => {
  const short = await startDivert({
    upstream: [`127.0.0.1:${upstream.port}`],
    'listen-https': ['127.0.0.1:0'],
    'tls-cert': cert.cert,
    'tls-key': cert.key,
    'tcp-idle-timeout-ms': '300',
    'upstream-timeout-ms': '2000',
  });
  try {
    const c = await RawH2.open(short.encrypted.doh[0].port);
    open.push(c);
    c.send(frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, headerBlock(get('slower-idle.example'))));
    assert.deepEqual(addresses((await c.response(1, 3000)).body), ['198.51.100.9']);
    await Promise.race([c.closed, sleep(3000).then(() => assert.fail('the session is still open 3 s after its answer'))]);
  } finally {
    await short.close();
  }
});

test('600 connections of valid frames mutated at random (seeded): nothing is logged as a fault, and the server answers on', async () => {
  const lines: string[] = [];
  const fuzzed = await startDivert(
    {
      upstream: [`127.0.0.1:${upstream.port}`],
      'listen-https': ['127.0.0.1:0'],
      'tls-cert': cert.cert,
      'tls-key': cert.key,
      'log-level': 'warn',
    },
    { logStream: { write: (line) => void lines.push(line) } },
  );
  const fuzzPort = fuzzed.encrypted.doh[0].port;
  let seed = 0x5eed;
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return Math.floor((seed / 2 ** 32) * n);
  };
  const valid = (id: number): Buffer[] => [
    frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, id, headerBlock(get(`fuzz-${id}.example`))),
    frame(T.HEADERS, F.END_HEADERS, id, headerBlock(POST, true)),
    frame(T.DATA, F.END_STREAM, id, query('fuzz.example', 'A', { id: 0 })),
    frame(T.CONTINUATION, F.END_HEADERS, id, Buffer.from([0x82, 0x87, 0xbe])),
    frame(T.RST_STREAM, 0, id, Buffer.alloc(4)),
    frame(T.WINDOW_UPDATE, 0, random(2) * id, Buffer.from([0, 0, 1, 0])),
    frame(T.PRIORITY, 0, id, Buffer.from([0, 0, 0, 0, 16])),
    settings([
      [1, random(8192)],
      [4, random(70_000)],
      [5, 16_384 + random(100)],
    ]),
    frame(T.PING, 0, 0, Buffer.alloc(8)),
  ];
  try {
    for (let round = 0; round < 30; round++) {
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const c = await RawH2.open(fuzzPort);
          const frames: Buffer[] = [];
          for (let k = 0; k < 8; k++) {
            const options = valid(1 + 2 * random(4));
            const f = Buffer.from(options[random(options.length)]);
            const how = random(8);
            if (how === 0 && f.length > 9) f[9 + random(f.length - 9)] ^= 1 << random(8);
            else if (how === 1) f[3] = random(12);
            else if (how === 2) f[4] = random(256);
            else if (how === 3) f.writeUInt32BE(random(16), 5);
            else if (how === 4) f.writeUIntBE(random(64), 0, 3);
            frames.push(f);
          }
          c.send(...frames);
          await Promise.race([c.closed, sleep(200)]);
          c.close();
        }),
      );
    }
    const reply = await h2Request(fuzzPort, { path: getPath(query('after-fuzz.example', 'A', { id: 0 })) });
    assert.equal(reply.status, 200);
    assert.deepEqual(addresses(reply.body), ['198.51.100.9']);
    assert.deepEqual(
      lines.filter((l) => /could not be served|error/i.test(l)),
      [],
    );
  } finally {
    await fuzzed.close();
  }
});

describe('breaches of the protocol', () => {
  const get1 = () => headerBlock(get(NAME));
  const word = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const cases: [string, () => Buffer[], number][] = [
    ['DATA on stream 0', () => [frame(T.DATA, 0, 0, Buffer.from('x'))], PROTOCOL_ERROR],
    ['DATA on a stream never opened', () => [frame(T.DATA, 0, 7, Buffer.from('x'))], PROTOCOL_ERROR],
    ['a frame over 16 KiB', () => [frame(T.DATA, 0, 1, Buffer.alloc(16_385))], FRAME_SIZE_ERROR],
    ['HEADERS on an even stream', () => [frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 2, get1())], PROTOCOL_ERROR],
    ['CONTINUATION with no HEADERS before it', () => [frame(T.CONTINUATION, F.END_HEADERS, 1, get1())], PROTOCOL_ERROR],
    [
      'another frame inside a header block',
      () => [frame(T.HEADERS, F.END_STREAM, 1, get1()), frame(T.PING, 0, 0, Buffer.alloc(8))],
      PROTOCOL_ERROR,
    ],
    ['an HPACK index of 0', () => [frame(T.HEADERS, F.END_STREAM | F.END_HEADERS, 1, Buffer.from([0x80]))], COMPRESSION_ERROR],
    [
      'a header block over 16 KiB in CONTINUATIONs',
      () => [frame(T.HEADERS, F.END_STREAM, 1, Buffer.alloc(10_000)), frame(T.CONTINUATION, 0, 1, Buffer.alloc(10_000))],
      ENHANCE_YOUR_CALM,
    ],
    [
      'padding longer than the frame',
      () => [frame(T.HEADERS, F.END_STREAM | F.END_HEADERS | F.PADDED, 1, Buffer.from([9, 0x82]))],
      PROTOCOL_ERROR,
    ],
    ['WINDOW_UPDATE of 0 on the connection', () => [frame(T.WINDOW_UPDATE, 0, 0, word(0))], PROTOCOL_ERROR],
    ['a connection window past 2^31-1', () => [frame(T.WINDOW_UPDATE, 0, 0, word(0x7fffffff))], FLOW_CONTROL_ERROR],
    ['SETTINGS of 5 octets', () => [frame(T.SETTINGS, 0, 0, Buffer.alloc(5))], FRAME_SIZE_ERROR],
    ['PUSH_PROMISE from a client', () => [frame(T.PUSH_PROMISE, F.END_HEADERS, 1, Buffer.alloc(4))], PROTOCOL_ERROR],
    ['PING of 7 octets', () => [frame(T.PING, 0, 0, Buffer.alloc(7))], FRAME_SIZE_ERROR],
  ];
  for (const [what, frames, code] of cases) {
    test(`${what}: GOAWAY with error ${code}, the connection closed`, async () => {
      const c = await client();
      c.send(...frames());
      assert.equal(await c.goaway(), code);
      await Promise.race([c.closed, sleep(3000).then(() => assert.fail('still open 3 s after GOAWAY'))]);
    });
  }

  test('no preface, or garbage after it: the connection is closed; after every breach the server answers a new connection', async () => {
    const noPreface = await client(undefined, false);
    noPreface.send(Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    await Promise.race([noPreface.closed, sleep(3000).then(() => assert.fail('a connection without the preface is still open'))]);
    const garbage = await client();
    for (let i = 0; i < 20 && !garbage.socket.destroyed; i++)
      garbage.send(Buffer.from(Array.from({ length: 64 }, (_, j) => (i * 131 + j * 71) & 0xff)));
    await Promise.race([garbage.closed, sleep(3000).then(() => assert.fail('a connection sending garbage is still open'))]);
    const reply = await h2Request(port, { path: getPath(query(NAME, 'A', { id: 0 })) });
    assert.equal(reply.status, 200);
    assert.deepEqual(
      dnsPacket.decode(reply.body).answers!.map((a) => (a as { data: unknown }).data),
      [ADDRESS],
    );
  });
});
