// Opcodes (PRODUCT.md, Answers): QUERY, STATUS and unassigned opcodes that are not
// intercepted go upstream unchanged and the client gets the upstream's reply as sent
// (but for the ID); UPDATE and NOTIFY — and the retired IQUERY and the session opcode
// DSO — are never passed upstream: NOTIMP.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, query, startDivert, tcpAsk, udpAsk, withoutId, type TestServer } from './helpers/divert.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import { encodeName } from './helpers/raw.js';

/** A message with this opcode: with one question for `name`, or (null) with none. */
function message(opcode: number, name: string | null, id = 0x2468): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE((opcode << 11) | 0x0100, 2);
  header.writeUInt16BE(name === null ? 0 : 1, 4);
  if (name === null) return header;
  return Buffer.concat([header, encodeName(name), Buffer.from([0, 6, 0, 1])]);
}

/** What the upstream answers to any message: its header with QR and rcode 0, the question echoed, and an odd unknown record. */
function upstreamReply(raw: Buffer): Buffer {
  const reply = Buffer.from(raw);
  reply.writeUInt16BE(raw.readUInt16BE(2) | 0x8000 | 0x0080, 2);
  const rr = Buffer.from([0, 0xff, 0x00, 0, 1, 0, 0, 0, 9, 0, 3, 1, 2, 3]); // root, TYPE65280, 3 bytes
  reply.writeUInt16BE(1, 10);
  return Buffer.concat([reply, rr]);
}

describe('opcodes', () => {
  let upstream: TestUpstream;
  let divert: TestServer;

  before(async () => {
    upstream = await startUpstream((q) => upstreamReply(q.raw));
    divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`] });
    await divert.table.put('www.op.test', { a: ['192.0.2.44'], aaaa: [], ttl: 30 });
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  for (const transport of ['udp', 'tcp'] as const) {
    const ask = (msg: Buffer) => (transport === 'udp' ? udpAsk(divert.port, msg) : tcpAsk(divert.port, msg));

    for (const [opcode, title] of [
      [2, 'STATUS'],
      [3, 'unassigned 3'],
      [15, 'unassigned 15'],
    ] as const) {
      for (const name of ['op.example', 'www.op.test', null]) {
        test(`${title} ${name === null ? 'without a question' : `for ${name}`} over ${transport}: forwarded unchanged, the upstream's reply returned as sent`, async () => {
          const before = upstream.queries.length;
          const sent = message(opcode, name);
          const reply = await ask(sent);
          assert.ok(reply, 'a reply');
          assert.equal(upstream.queries.length, before + 1, 'the upstream got it');
          const got = upstream.queries[before].raw;
          assert.deepEqual(withoutId(got), withoutId(sent), 'the upstream got the message unchanged but for the ID');
          assert.equal(reply.readUInt16BE(0), sent.readUInt16BE(0), "the client's ID is put back");
          assert.deepEqual(withoutId(reply), withoutId(upstream.sent[upstream.sent.length - 1]), "the upstream's reply, byte for byte");
        });
      }
    }

    for (const [opcode, title] of [
      [1, 'IQUERY'],
      [4, 'NOTIFY'],
      [5, 'UPDATE'],
      [6, 'DSO'],
    ] as const) {
      test(`${title} over ${transport}: NOTIMP, nothing passed upstream`, async () => {
        const before = upstream.queries.length;
        for (const name of ['op.example', null]) {
          const d = decode(await ask(message(opcode, name)));
          assert.equal(d.rcode, 'NOTIMP');
          assert.equal(d.id, 0x2468);
        }
        assert.equal(upstream.queries.length, before);
      });
    }
  }

  test('a QUERY without a question is still FORMERR (it is judged), and nothing goes upstream', async () => {
    const before = upstream.queries.length;
    assert.equal(decode(await udpAsk(divert.port, message(0, null))).rcode, 'FORMERR');
    assert.equal(upstream.queries.length, before);
  });

  test('the intercepted name still answers a QUERY from the table', async () => {
    const d = decode(await udpAsk(divert.port, query('www.op.test')));
    assert.deepEqual(
      d.answers!.map((a) => (a as { data: unknown }).data),
      ['192.0.2.44'],
    );
  });
});
