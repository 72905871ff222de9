// Bad input and unwelcome clients: each malformed message gets FORMERR or is dropped,
// and the server goes on answering normal queries over UDP and TCP afterwards.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query, startDivert, tcpAsk, tcpSession, udpAsk, TEST_WORKERS, type TestServer } from './helpers/divert.js';
import { startUpstream, replyTo, type TestUpstream } from './helpers/upstream.js';
import { BACKENDS } from './helpers/backends.js';
import { lengthPrefix } from '../src/transport/tcp-framer.js';

function header(id: number, flags: number, counts: [number, number, number, number]): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  counts.forEach((c, i) => h.writeUInt16BE(c, 4 + i * 2));
  return h;
}

const question = (name: Buffer) => Buffer.concat([name, Buffer.from([0, 1, 0, 1])]);
const www = Buffer.from([3, 119, 119, 119, 4, 99, 111, 114, 112, 4, 116, 101, 115, 116, 0]);

const malformed: [string, Buffer, 'formerr' | 'drop'][] = [
  ['a truncated header', Buffer.from([0x12, 0x34, 0x01]), 'drop'],
  // (a header of opcode QUERY: garbage of an unassigned opcode is forwarded unjudged, see opcodes.test.ts)
  [
    'garbage',
    Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00]), Buffer.from('this is not a DNS message at all, just bytes')]),
    'formerr',
  ],
  ['a compression-pointer loop', Buffer.concat([header(0x1001, 0x0100, [1, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1])]), 'formerr'],
  [
    'a pointer pointing at itself after a label',
    Buffer.concat([header(0x1002, 0x0100, [1, 0, 0, 0]), Buffer.from([1, 97, 0xc0, 12, 0, 1, 0, 1])]),
    'formerr',
  ],
  ['QDCOUNT 0', header(0x1003, 0x0100, [0, 0, 0, 0]), 'formerr'],
  ['QDCOUNT 2', Buffer.concat([header(0x1004, 0x0100, [2, 0, 0, 0]), question(www), question(www)]), 'formerr'],
  ['a label running past the end', Buffer.concat([header(0x1005, 0x0100, [1, 0, 0, 0]), Buffer.from([40, 97, 98])]), 'formerr'],
  ['a question without type and class', Buffer.concat([header(0x1006, 0x0100, [1, 0, 0, 0]), www]), 'formerr'],
  ['a response sent as a query', Buffer.concat([header(0x1007, 0x8180, [1, 0, 0, 0]), question(www)]), 'drop'],
  [
    'an OPT record that runs off the end (intercepted name)',
    Buffer.concat([header(0x1008, 0x0100, [1, 0, 0, 1]), question(www), Buffer.from([0, 0, 41, 4, 0])]),
    'formerr',
  ],
];

for (const [backend, makeBackend] of BACKENDS)
  describe(`malformed input (${backend} table)`, () => {
    let upstream: TestUpstream;
    let divert: TestServer;
    let backendCleanup: () => Promise<void>;

    before(async () => {
      upstream = await startUpstream((q) =>
        replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.1' }] }),
      );
      const b = await makeBackend('robust');
      backendCleanup = b.cleanup;
      divert = await startDivert({
        ...b.options,
        upstream: [`127.0.0.1:${upstream.port}`],
        'tcp-idle-timeout-ms': '300',
        'tcp-max-connections': '3',
      });
      await divert.table.put('www.corp.test', { a: ['192.0.2.1'], aaaa: [], ttl: 30 });
    });
    after(async () => {
      await divert.close();
      await upstream.close();
      await backendCleanup();
    });

    async function stillAnswers() {
      assert.deepEqual(await divert.resolver.resolve4('www.corp.test'), ['192.0.2.1']);
      assert.deepEqual(
        decode(await tcpAsk(divert.port, query('fwd.corp.test'))).answers!.map((a) => (a as { data: string }).data),
        ['203.0.113.1'],
      );
    }

    for (const [title, bytes, verdict] of malformed) {
      test(`${title}: ${verdict === 'formerr' ? 'FORMERR' : 'dropped'}, then normal service over UDP and TCP`, async () => {
        const udpReply = await udpAsk(divert.port, bytes, verdict === 'drop' ? 300 : 3000);
        const session = tcpSession(divert.port);
        session.send(bytes);
        session.send(query('www.corp.test'));
        // over TCP the malformed message and a good one on the same connection
        const tcpReplies = await session.waitFor(verdict === 'drop' ? 1 : 2);
        session.close();
        if (verdict === 'drop') {
          assert.equal(udpReply, null, 'no reply over UDP');
          assert.equal(decode(tcpReplies[0]).answers!.length, 1, 'the good query after it is answered');
        } else {
          assert.ok(udpReply, 'a reply over UDP');
          assert.equal(udpReply[3] & 0x0f, 1, 'FORMERR');
          assert.equal(udpReply.readUInt16BE(0), bytes.readUInt16BE(0), "with the query's ID");
          assert.equal(tcpReplies[0][3] & 0x0f, 1, 'FORMERR over TCP');
        }
        await stillAnswers();
      });
    }

    test('a TCP length prefix of 65535 with nothing behind it: the connection is closed when idle', async () => {
      const session = tcpSession(divert.port);
      await session.connected;
      session.writeRaw(Buffer.from([0xff, 0xff, 1, 2, 3]));
      const started = Date.now();
      await session.closed;
      assert.ok(Date.now() - started < 2000, 'closed by the idle timeout');
      await stillAnswers();
    });

    test('a TCP connection that never sends is closed after the idle timeout', async () => {
      const session = tcpSession(divert.port);
      await session.connected;
      await Promise.race([session.closed, sleep(2000)]);
      assert.ok(session.isClosed(), 'closed within 2 s (idle timeout 300 ms)');
      await stillAnswers();
    });

    test('pipelined queries on one connection, written in one chunk and split at odd places', async () => {
      const names = ['www.corp.test', 'a.corp.test', 'b.corp.test', 'www.corp.test'];
      const frames = Buffer.concat(
        names.map((n) => {
          const q = query(n);
          return Buffer.concat([lengthPrefix(q), q]);
        }),
      );
      const session = tcpSession(divert.port);
      await session.connected;
      session.writeRaw(frames.subarray(0, 1)); // inside the first length prefix
      await sleep(20);
      session.writeRaw(frames.subarray(1, 30));
      await sleep(20);
      session.writeRaw(frames.subarray(30));
      const replies = await session.waitFor(4);
      session.close();
      assert.deepEqual(replies.map((r) => decode(r).questions![0].name).sort(), [...names].sort());
    });

    test('beyond --tcp-max-connections (per worker), a newcomer closes the least recently active idle connection (RFC 7766 6.2.3)', async () => {
      const limit = 3 * Number(TEST_WORKERS);
      const sessions = [];
      // from different /24s, so --tcp-max-per-client (64) is not what closes them
      for (let i = 0; i < limit + 2; i++) {
        const session = tcpSession(divert.port, '127.0.0.1', `127.0.${10 + i}.1`);
        await Promise.race([session.connected, session.closed]);
        sessions.push(session);
        await sleep(10); // let the server count it
      }
      await sleep(50); // all within the 300 ms idle timeout
      const open = sessions.filter((s) => !s.isClosed());
      assert.ok(open.length >= 3 && open.length <= limit, `${open.length} of ${sessions.length} connections kept (limit ${limit})`);
      if (TEST_WORKERS === '1') assert.deepEqual(open, sessions.slice(2), 'the newest three are kept, the oldest idle ones closed');
      const newest = open[open.length - 1];
      newest.send(query('www.corp.test'));
      assert.equal(decode((await newest.waitFor(1))[0]).answers!.length, 1);
      sessions.forEach((s) => s.close());
      await sleep(50);
    });

    test('a client that half-closes after sending still gets every answer', async () => {
      const session = tcpSession(divert.port);
      await session.connected;
      session.send(query('www.corp.test'));
      session.send(query('c.corp.test'));
      session.socket.end();
      const replies = await session.waitFor(2);
      assert.equal(replies.length, 2);
    });
  });

describe('access', () => {
  test('a client outside --allow gets REFUSED, and nothing reaches the upstream', async () => {
    const upstream = await startUpstream((q) => replyTo(q));
    const divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`], allow: ['10.0.0.0/8'] });
    try {
      await divert.table.put('www.corp.test', { a: ['192.0.2.1'], aaaa: [], ttl: 30 });
      for (const name of ['www.corp.test', 'elsewhere.test']) {
        assert.equal(decode(await udpAsk(divert.port, query(name))).rcode, 'REFUSED');
        // over TCP the connection is reset at accept, before a byte of the query is read
        await assert.rejects(tcpAsk(divert.port, query(name)), /closed after 0 of 1 replies/);
      }
      assert.equal(upstream.queries.length, 0);
    } finally {
      await divert.close();
      await upstream.close();
    }
  });

  test('the default allow list admits loopback', async () => {
    const upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 1, data: '203.0.113.5' }] }),
    );
    const divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`] });
    try {
      assert.deepEqual(await divert.resolver.resolve4('x.test'), ['203.0.113.5']);
    } finally {
      await divert.close();
      await upstream.close();
    }
  });
});
