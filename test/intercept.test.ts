// Intercepted names answered as the contract says, with each table backend: A, AAAA,
// both, wildcard, case, NODATA, TTL, EDNS and truncation, over real sockets.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { decode, dig, findDig, query, startDivert, tcpAsk, udpAsk, type TestServer } from './helpers/divert.js';
import { BACKENDS } from './helpers/backends.js';
import { RCODE, replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';

const bigAddresses = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
const ZONE = `$ORIGIN corp.test.
$TTL 45
both    IN A    192.0.2.1
        IN A    192.0.2.2
        IN AAAA 2001:db8::1
v4only  IN A    192.0.2.3
v6only  IN AAAA 2001:db8::3
*.wild  IN A    192.0.2.4
exact.wild IN A 192.0.2.5
long 300 IN A   192.0.2.6
${bigAddresses.map((a) => `big IN A ${a}`).join('\n')}
`;

function withType(msg: Buffer, qtype: number): Buffer {
  const copy = Buffer.from(msg);
  // the query helper writes one question and no other records: qtype is 4 bytes from the end
  copy.writeUInt16BE(qtype, copy.length - 4);
  return copy;
}

function answerAddresses(reply: Buffer | null): string[] {
  return decode(reply)
    .answers!.map((a) => (a as { data: string }).data)
    .sort();
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`intercepted names (${backend} table)`, () => {
    let upstream: TestUpstream;
    let divert: TestServer;
    let cleanup: () => Promise<void>;

    before(async () => {
      upstream = await startUpstream((q) => replyTo(q, {}, RCODE.NXDOMAIN));
      const dir = mkdtempSync(join(tmpdir(), 'divert-zone-'));
      writeFileSync(join(dir, 'corp.zone'), ZONE);
      const b = await makeBackend('intercept');
      cleanup = b.cleanup;
      divert = await startDivert({ ...b.options, upstream: [`127.0.0.1:${upstream.port}`], zones: [dir] });
    });
    after(async () => {
      await divert.close();
      await upstream.close();
      await cleanup();
    });

    test('A and AAAA of a name with both families, all addresses, the entry TTL', async () => {
      assert.deepEqual(
        (await divert.resolver.resolve4('both.corp.test', { ttl: true })).sort((x, y) => x.address.localeCompare(y.address)),
        [
          { address: '192.0.2.1', ttl: 45 },
          { address: '192.0.2.2', ttl: 45 },
        ],
      );
      assert.deepEqual(await divert.resolver.resolve6('both.corp.test', { ttl: true }), [{ address: '2001:db8::1', ttl: 45 }]);
      assert.deepEqual(await divert.resolver.resolve4('long.corp.test', { ttl: true }), [{ address: '192.0.2.6', ttl: 300 }]);
    });

    test("a missing address family is NODATA, not the upstream's answer", async () => {
      await assert.rejects(divert.resolver.resolve6('v4only.corp.test'), { code: 'ENODATA' });
      await assert.rejects(divert.resolver.resolve4('v6only.corp.test'), { code: 'ENODATA' });
      assert.deepEqual(await divert.resolver.resolve4('v4only.corp.test'), ['192.0.2.3']);
      assert.deepEqual(await divert.resolver.resolve6('v6only.corp.test'), ['2001:db8::3']);
    });

    test('MX, TXT and HTTPS of an intercepted name get NODATA and never reach the upstream', async () => {
      const before = upstream.queries.length;
      for (const qtype of [15, 16, 65]) {
        const reply = decode(await udpAsk(divert.port, withType(query('both.corp.test'), qtype)));
        assert.equal(reply.rcode, 'NOERROR', `type ${qtype}`);
        assert.equal(reply.answers!.length, 0, `type ${qtype}`);
        assert.ok(reply.flags! & dnsPacket.AUTHORITATIVE_ANSWER);
      }
      assert.equal(upstream.queries.length, before);
    });

    test('wildcard answers names below it; an exact entry wins; the parent itself is not covered', async () => {
      assert.deepEqual(await divert.resolver.resolve4('a.b.wild.corp.test'), ['192.0.2.4']);
      assert.deepEqual(await divert.resolver.resolve4('x.wild.corp.test'), ['192.0.2.4']);
      assert.deepEqual(await divert.resolver.resolve4('exact.wild.corp.test'), ['192.0.2.5']);
      await assert.rejects(divert.resolver.resolve4('wild.corp.test'), { code: 'ENOTFOUND' });
    });

    test('names match case-insensitively and the question is echoed byte for byte', async () => {
      const q = query('BoTh.CoRp.TeSt');
      const reply = await udpAsk(divert.port, q);
      assert.ok(reply);
      assert.deepEqual(reply.subarray(12, q.length), q.subarray(12));
      assert.equal(reply.readUInt16BE(0), q.readUInt16BE(0));
      assert.deepEqual(answerAddresses(reply), ['192.0.2.1', '192.0.2.2']);
    });

    test('an OPT record in the reply exactly when the query had one', async () => {
      const plain = decode(await udpAsk(divert.port, query('both.corp.test')));
      assert.equal(plain.additionals!.length, 0);
      const withEdns = decode(
        await udpAsk(
          divert.port,
          query('both.corp.test', 'A', {
            additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: dnsPacket.DNSSEC_OK } as never],
          }),
        ),
      );
      assert.equal(withEdns.additionals!.length, 1);
      const opt = withEdns.additionals![0] as unknown as { type: string; flags: number };
      assert.equal(opt.type, 'OPT');
      assert.ok(opt.flags & dnsPacket.DNSSEC_OK, 'DO bit copied');
    });

    test('an answer too large for the client sets TC over UDP and arrives whole over TCP', async () => {
      const truncated = decode(await udpAsk(divert.port, query('big.corp.test')));
      assert.ok(truncated.flags! & dnsPacket.TRUNCATED_RESPONSE);
      assert.equal(truncated.answers!.length, 0);

      const edns = await udpAsk(
        divert.port,
        query('big.corp.test', 'A', {
          additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never],
        }),
      );
      assert.equal(decode(edns).flags! & dnsPacket.TRUNCATED_RESPONSE, 0);
      assert.deepEqual(answerAddresses(edns), [...bigAddresses].sort());

      const overTcp = await tcpAsk(divert.port, query('big.corp.test'));
      assert.equal(decode(overTcp).flags! & dnsPacket.TRUNCATED_RESPONSE, 0);
      assert.deepEqual(answerAddresses(overTcp), [...bigAddresses].sort());
    });

    test('dig sees the intercepted answer (when dig is installed)', async (t) => {
      if (!(await findDig())) {
        t.diagnostic('dig not installed; covered by the Node resolver tests above');
        return;
      }
      const out = await dig(divert.port, ['both.corp.test', 'A', '+short']);
      assert.deepEqual(out.trim().split('\n').sort(), ['192.0.2.1', '192.0.2.2']);
      const tcp = await dig(divert.port, ['both.corp.test', 'AAAA', '+tcp', '+short']);
      assert.equal(tcp.trim(), '2001:db8::1');
    });
  });
}
