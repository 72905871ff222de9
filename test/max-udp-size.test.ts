// divert's own UDP replies never exceed --max-udp-size (default 1232), whatever EDNS size
// the client offers: a 40-byte spoofed query must not draw a large answer at its victim.
// A larger answer goes out truncated (TC) and comes whole over TCP.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, query, startDivert, tcpAsk, udpAsk, type TestServer } from './helpers/divert.js';

/** 50 IPv6 addresses: 50 × 28 bytes of records, more than 1232 in all. */
const MANY = Array.from({ length: 50 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);

/** The TC bit of a reply's header. */
const truncated = (reply: Buffer) => (reply.readUInt16BE(2) & 0x0200) !== 0;

function ednsQuery(name: string, payload: number): Buffer {
  return query(name, 'AAAA', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: payload, flags: 0, options: [] } as never] });
}

for (const [flags, limit] of [
  [{}, 1232],
  [{ 'max-udp-size': '4096' }, 4096],
  [{ 'max-udp-size': '512' }, 512],
] as const) {
  describe(`UDP replies with --max-udp-size ${limit}${Object.keys(flags).length === 0 ? ' (the default)' : ''}`, () => {
    let divert: TestServer;

    before(async () => {
      divert = await startDivert({ ...flags, upstream: ['127.0.0.1:9'] });
      await divert.table.put('many.big.test', { a: [], aaaa: MANY, ttl: 30 });
      await divert.table.put('few.big.test', { a: [], aaaa: MANY.slice(0, 2), ttl: 30 });
    });
    after(async () => divert?.close());

    for (const payload of [512, 1232, 4096, 65535]) {
      test(`a client offering ${payload} bytes gets at most ${Math.min(Math.max(payload, 512), limit)}`, async () => {
        const reply = await udpAsk(divert.port, ednsQuery('many.big.test', payload));
        assert.ok(reply);
        const cap = Math.min(Math.max(payload, 512), limit);
        assert.ok(reply.length <= cap, `${reply.length} bytes > ${cap}`);
        const d = decode(reply);
        const whole = 12 + 18 + MANY.length * 28 + 11;
        if (whole > cap) {
          assert.equal(truncated(reply), true, 'truncated');
          assert.equal(d.answers!.length, 0, 'no partial RRset (RFC 2181 9)');
        } else {
          assert.equal(truncated(reply), false);
          assert.equal(d.answers!.length, MANY.length);
        }
      });
    }

    test('a small answer is whole whatever the client offers', async () => {
      const reply = (await udpAsk(divert.port, ednsQuery('few.big.test', 65535)))!;
      assert.equal(truncated(reply), false);
      assert.equal(decode(reply).answers!.length, 2);
    });

    test('over TCP the answer comes whole', async () => {
      const reply = await tcpAsk(divert.port, ednsQuery('many.big.test', 65535));
      assert.equal(truncated(reply), false);
      assert.equal(decode(reply).answers!.length, MANY.length);
    });
  });
}

test('--max-udp-size below 512 or above 4096 is refused with the option named', async () => {
  for (const bad of ['511', '4097', 'big']) {
    await assert.rejects(startDivert({ 'max-udp-size': bad }), new RegExp(`--max-udp-size "${bad}"`));
  }
});
