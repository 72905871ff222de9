// Everything not intercepted is forwarded unchanged: the client gets the upstream's reply
// byte for byte but for the ID, over the transport it asked on. Spoofed replies are
// dropped; silent upstreams give way to the next one, and to SERVFAIL in time.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { decode, query, startDivert, tcpAsk, udpAsk, withoutId, type TestServer } from './helpers/divert.js';
import { FLAG, ipv4, opt, rawReply, rr } from './helpers/raw.js';
import { startUpstream, type TestUpstream, type UpstreamQuery } from './helpers/upstream.js';
import { BACKENDS } from './helpers/backends.js';

const A = 1,
  NS = 2,
  CNAME = 5,
  SOA = 6,
  TXT = 16,
  AAAA = 28,
  RRSIG = 46,
  IN = 1;
const response = FLAG.QR | FLAG.RD | FLAG.RA;

function txt(text: string): Buffer {
  return Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);
}

function soa(): Buffer {
  const serials = Buffer.alloc(20);
  [2024010101, 3600, 600, 86400, 300].forEach((v, i) => serials.writeUInt32BE(v, i * 4));
  return Buffer.concat([Buffer.from([3, 110, 115, 49, 0]), Buffer.from([4, 114, 111, 111, 116, 0]), serials]);
}

/** The odd replies a real resolver sends, keyed by the first label of the name. */
function respond(q: UpstreamQuery): Buffer | null {
  const name = q.packet.questions![0].name.toLowerCase();
  const label = name.split('.')[0];
  switch (label) {
    case 'big': {
      const records = Array.from({ length: 12 }, (_, i) => rr(name, TXT, IN, 60, txt(`record ${i} `.padEnd(60, 'x'))));
      // a real server truncates over UDP when the reply exceeds 512 bytes and the query had no EDNS
      if (q.transport === 'udp') return rawReply(q.raw, { flags: response | FLAG.TC });
      return rawReply(q.raw, { flags: response, answers: records });
    }
    case 'unknown': // RFC 3597: a type divert has never heard of
      return rawReply(q.raw, { flags: response, answers: [rr(name, 65280, IN, 120, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 1, 2]))] });
    case 'missing':
      return rawReply(q.raw, { flags: response | 3, authority: [rr('fwd.test', SOA, IN, 300, soa())] });
    case 'cname':
      return rawReply(q.raw, {
        flags: response,
        answers: [
          rr(name, CNAME, IN, 300, Buffer.from([2, 99, 49, 3, 102, 119, 100, 4, 116, 101, 115, 116, 0])),
          rr('c1.fwd.test', CNAME, IN, 300, Buffer.from([2, 99, 50, 3, 102, 119, 100, 4, 116, 101, 115, 116, 0])),
          rr('c2.fwd.test', A, IN, 300, ipv4('203.0.113.7')),
        ],
      });
    case 'edns':
      return rawReply(q.raw, {
        flags: response,
        answers: [rr(name, A, IN, 60, ipv4('203.0.113.8'))],
        additional: [
          opt(1232, 0, [
            [3, Buffer.from('ns-7.upstream')],
            [10, Buffer.from('0123456789abcdef0011223344556677', 'hex')],
          ]),
        ],
      });
    case 'signed':
      return rawReply(q.raw, {
        flags: response | FLAG.AD,
        answers: [rr(name, A, IN, 60, ipv4('203.0.113.9')), rr(name, RRSIG, IN, 60, Buffer.alloc(40, 7))],
        additional: [opt(1232, 0x8000)],
      });
    case 'order': // deliberately unsorted, with an authority and a glue record
      return rawReply(q.raw, {
        flags: response,
        answers: ['203.0.113.30', '203.0.113.10', '203.0.113.20'].map((a) => rr(name, A, IN, 60, ipv4(a))),
        authority: [rr('fwd.test', NS, IN, 300, Buffer.from([2, 110, 115, 3, 102, 119, 100, 4, 116, 101, 115, 116, 0]))],
        additional: [rr('ns.fwd.test', AAAA, IN, 300, Buffer.alloc(16, 1))],
      });
    case 'refused':
      return rawReply(q.raw, { flags: FLAG.QR | FLAG.RD | 5 });
    case 'flags': // AA and CD set, RA cleared: passed on exactly so
      return rawReply(q.raw, { flags: FLAG.QR | FLAG.AA | FLAG.CD, answers: [rr(name, A, IN, 5, ipv4('203.0.113.11'))] });
    case 'silent':
      return null;
    default:
      return rawReply(q.raw, { flags: response, answers: [rr(name, A, IN, 60, ipv4('203.0.113.1'))] });
  }
}

for (const [backend, makeBackend] of BACKENDS)
  describe(`forwarding (${backend} table)`, () => {
    let upstream: TestUpstream;
    let divert: TestServer;
    let backendCleanup: () => Promise<void>;

    before(async () => {
      upstream = await startUpstream(respond);
      const b = await makeBackend('forward');
      backendCleanup = b.cleanup;
      divert = await startDivert({
        ...b.options,
        upstream: [`127.0.0.1:${upstream.port}`],
        'upstream-timeout-ms': '200',
        'query-timeout-ms': '600',
      });
    });
    after(async () => {
      await divert.close();
      await upstream.close();
      await backendCleanup();
    });

    /** Asks divert and returns what the client got and what the upstream had sent for it. */
    async function roundTrip(msg: Buffer, transport: 'udp' | 'tcp') {
      const before = upstream.sent.length;
      const got = transport === 'udp' ? await udpAsk(divert.port, msg) : await tcpAsk(divert.port, msg);
      assert.ok(got, 'a reply');
      assert.equal(upstream.sent.length, before + 1, 'the upstream answered once');
      return { got, sent: upstream.sent[before], asked: upstream.queries[upstream.queries.length - 1] };
    }

    const cases: [string, string, 'udp' | 'tcp', Partial<dnsPacket.Packet>?][] = [
      ['a reply over 512 bytes reaches a UDP client truncated', 'big.fwd.test', 'udp'],
      ['the same reply arrives whole over TCP', 'big.fwd.test', 'tcp'],
      ['an unknown record type (RFC 3597)', 'unknown.fwd.test', 'udp'],
      ['NXDOMAIN with the SOA', 'missing.fwd.test', 'udp'],
      ['a CNAME chain', 'cname.fwd.test', 'udp'],
      ['EDNS options NSID and cookie', 'edns.fwd.test', 'udp'],
      ['RRSIG records and AD with DO', 'signed.fwd.test', 'udp'],
      ['records in a deliberate order in every section', 'order.fwd.test', 'udp'],
      ['REFUSED', 'refused.fwd.test', 'udp'],
      ['flags the upstream sets or clears (AA, CD set; RA clear)', 'flags.fwd.test', 'udp'],
      ['mixed-case name over TCP', 'ORDER.Fwd.Test', 'tcp'],
    ];
    for (const [title, name, transport] of cases) {
      test(`byte for byte but the ID: ${title}`, async () => {
        const msg = query(
          name,
          name.startsWith('big') ? 'TXT' : 'A',
          name.startsWith('signed') || name.startsWith('edns')
            ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as never] }
            : {},
        );
        const { got, sent, asked } = await roundTrip(msg, transport);
        assert.deepEqual(withoutId(got), withoutId(sent));
        assert.equal(got.readUInt16BE(0), msg.readUInt16BE(0), "the client's ID");
        assert.equal(asked.transport, transport, "the upstream was asked over the client's transport");
        assert.deepEqual(withoutId(asked.raw), withoutId(msg), 'the query went up unchanged but for its ID');
      });
    }

    test('the truncated reply over UDP has TC set and no records; the TCP one has all 12', async () => {
      assert.ok(decode(await udpAsk(divert.port, query('big.fwd.test', 'TXT'))).flags! & dnsPacket.TRUNCATED_RESPONSE);
      assert.equal(decode(await tcpAsk(divert.port, query('big.fwd.test', 'TXT'))).answers!.length, 12);
    });

    test('every forwarded query gets a fresh random ID and source port', async () => {
      const ids = new Set<number>();
      const ports = new Set<number>();
      const fixedId = query('random.fwd.test');
      for (let i = 0; i < 20; i++) {
        const before = upstream.queries.length;
        assert.ok(await udpAsk(divert.port, fixedId));
        const asked = upstream.queries[before];
        ids.add(asked.packet.id!);
        ports.add(asked.from.port);
      }
      assert.ok(ids.size >= 18, `IDs drawn at random (${ids.size} distinct of 20)`);
      // from the 64 sockets of --upstream-sockets' default: about 17 distinct expected, fewer than 12 about once in 10,000 runs
      assert.ok(ports.size >= 12, `source ports drawn at random (${ports.size} distinct of 20)`);
    });

    test('a reply from another port, with a wrong ID or for another question is not delivered; the last two are counted', async () => {
      const rejectedBefore = (await divert.stats()).rejectedReplies;
      const saved = upstream.respond;
      upstream.respond = async (q) => {
        const to = q.from;
        const spoof = (id: number, name: string) => {
          const forged = rawReply(query(name), { flags: response, answers: [rr(name, A, IN, 60, ipv4('6.6.6.6'))] });
          forged.writeUInt16BE(id, 0);
          return forged;
        };
        await upstream.sendFromOtherPort(spoof(q.packet.id!, 'victim.fwd.test'), to);
        upstream.sendFromUpstreamPort(spoof((q.packet.id! + 1) & 0xffff, 'victim.fwd.test'), to);
        upstream.sendFromUpstreamPort(spoof(q.packet.id!, 'other.fwd.test'), to);
        await sleep(50);
        return rawReply(q.raw, { flags: response, answers: [rr('victim.fwd.test', A, IN, 60, ipv4('203.0.113.99'))] });
      };
      try {
        const got = decode(await udpAsk(divert.port, query('victim.fwd.test')));
        assert.deepEqual(
          got.answers!.map((a) => (a as { data: string }).data),
          ['203.0.113.99'],
        );
        // the one from another port never reaches divert: the upstream socket is connected, so the kernel drops it
        assert.equal((await divert.stats()).rejectedReplies - rejectedBefore, 2, 'the wrong-ID and wrong-question replies counted');
      } finally {
        upstream.respond = saved;
      }
    });

    test('an upstream that never answers gives SERVFAIL within the query timeout', async () => {
      const started = Date.now();
      const got = await udpAsk(divert.port, query('silent.fwd.test'));
      const elapsed = Date.now() - started;
      assert.equal(decode(got).rcode, 'SERVFAIL');
      assert.ok(elapsed >= 550 && elapsed < 1500, `SERVFAIL after ${elapsed} ms (query timeout 600 ms)`);
      const overTcp = await tcpAsk(divert.port, query('silent.fwd.test'));
      assert.equal(decode(overTcp).rcode, 'SERVFAIL');
    });
  });

describe('several upstreams', () => {
  test('a silent first upstream is followed by the second, whose answer arrives; a failing one is then skipped', async () => {
    const silent = await startUpstream(() => null);
    const good = await startUpstream((q) =>
      rawReply(q.raw, { flags: response, answers: [rr(q.packet.questions![0].name, A, IN, 60, ipv4('203.0.113.2'))] }),
    );
    const divert = await startDivert({
      upstream: [`127.0.0.1:${silent.port}`, `127.0.0.1:${good.port}`],
      'upstream-timeout-ms': '100',
      'query-timeout-ms': '1000',
    });
    try {
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(await divert.resolver.resolve4(`n${i}.two.test`), ['203.0.113.2']);
      }
      // three failures in a row: the silent one is moved back and not asked first any more
      const askedBefore = silent.queries.length;
      const started = Date.now();
      assert.deepEqual(await divert.resolver.resolve4('after.two.test'), ['203.0.113.2']);
      assert.equal(silent.queries.length, askedBefore, 'the failing upstream was skipped');
      assert.ok(Date.now() - started < 100, 'answered without waiting for the failing upstream');
    } finally {
      await divert.close();
      await silent.close();
      await good.close();
    }
  });

  test('an upstream that refuses TCP connections gives way to the next at once', async () => {
    const good = await startUpstream((q) =>
      rawReply(q.raw, { flags: response, answers: [rr(q.packet.questions![0].name, A, IN, 60, ipv4('203.0.113.3'))] }),
    );
    // port 9 (discard): nothing listens, and being below the ephemeral range no parallel test's socket can take it
    const divert = await startDivert({ upstream: ['127.0.0.1:9', `127.0.0.1:${good.port}`], 'upstream-timeout-ms': '1000' });
    try {
      const started = Date.now();
      const got = decode(await tcpAsk(divert.port, query('tcp.two.test')));
      assert.deepEqual(
        got.answers!.map((a) => (a as { data: string }).data),
        ['203.0.113.3'],
      );
      assert.ok(Date.now() - started < 900, 'did not wait for the attempt timeout');
    } finally {
      await divert.close();
      await good.close();
    }
  });
});
