// TCP framing (RFC 1035 4.2.2, RFC 7766): whatever way the bytes arrive, the framer hands
// out the same whole messages in the same order, and keeps only what is still incomplete.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lengthPrefix, MAX_TCP_MESSAGE, TcpFramer } from '../src/transport/tcp-framer.js';

/** A message whose bytes tell where they came from, so mix-ups show. */
function message(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

function framed(...messages: Buffer[]): Buffer {
  return Buffer.concat(messages.flatMap((m) => [lengthPrefix(m), m]));
}

/** Feeds the chunks one after another and collects every message handed out. */
function feed(framer: TcpFramer, chunks: Buffer[]): Buffer[] {
  return chunks.flatMap((chunk) => framer.push(chunk));
}

/** Splits `bytes` at the given offsets. */
function splitAt(bytes: Buffer, ...offsets: number[]): Buffer[] {
  const cuts = [0, ...offsets, bytes.length];
  return cuts.slice(1).map((end, i) => bytes.subarray(cuts[i], end));
}

describe('lengthPrefix', () => {
  const cases: { length: number; prefix: number[] }[] = [
    { length: 0, prefix: [0x00, 0x00] },
    { length: 1, prefix: [0x00, 0x01] },
    { length: 29, prefix: [0x00, 0x1d] },
    { length: 256, prefix: [0x01, 0x00] },
    { length: 512, prefix: [0x02, 0x00] },
    { length: MAX_TCP_MESSAGE, prefix: [0xff, 0xff] },
  ];
  for (const c of cases) {
    test(`${c.length} bytes → ${c.prefix.map((b) => b.toString(16).padStart(2, '0')).join(' ')}`, () => {
      assert.deepEqual([...lengthPrefix(Buffer.alloc(c.length))], c.prefix);
    });
  }

  test('MAX_TCP_MESSAGE is 65535', () => {
    assert.equal(MAX_TCP_MESSAGE, 65535);
  });
});

describe('TcpFramer', () => {
  const a = message(29, 1);
  const b = message(1, 2);
  const c = message(300, 3);
  const empty = Buffer.alloc(0);
  const biggest = message(MAX_TCP_MESSAGE, 4);

  const chunkings: { name: string; chunks: Buffer[]; expect: Buffer[]; pending: number }[] = [
    { name: 'one message in one chunk', chunks: [framed(a)], expect: [a], pending: 0 },
    { name: 'three messages in one chunk', chunks: [framed(a, b, c)], expect: [a, b, c], pending: 0 },
    { name: 'a zero-length message', chunks: [framed(empty)], expect: [empty], pending: 0 },
    {
      name: 'zero-length messages between others',
      chunks: [framed(empty, a, empty, empty, b)],
      expect: [empty, a, empty, empty, b],
      pending: 0,
    },
    { name: 'a 65535-byte message in one chunk', chunks: [framed(biggest)], expect: [biggest], pending: 0 },
    {
      name: 'a 65535-byte message in 1000-byte chunks',
      chunks: splitAt(framed(biggest), ...Array.from({ length: 65 }, (_, i) => (i + 1) * 1000)),
      expect: [biggest],
      pending: 0,
    },
    { name: 'a 65535-byte message between two small ones', chunks: [framed(a, biggest, b)], expect: [a, biggest, b], pending: 0 },
    {
      name: 'whole message then half a length prefix',
      chunks: [Buffer.concat([framed(a), framed(c).subarray(0, 1)])],
      expect: [a],
      pending: 1,
    },
    { name: 'whole message then a length prefix', chunks: [Buffer.concat([framed(a), framed(c).subarray(0, 2)])], expect: [a], pending: 2 },
    {
      name: 'whole message then part of the next',
      chunks: [Buffer.concat([framed(a), framed(c).subarray(0, 102)])],
      expect: [a],
      pending: 102,
    },
    { name: 'only part of a message', chunks: [framed(c).subarray(0, 150)], expect: [], pending: 150 },
    { name: 'empty chunks change nothing', chunks: [empty, framed(a), empty, empty], expect: [a], pending: 0 },
    { name: 'nothing at all', chunks: [], expect: [], pending: 0 },
  ];
  for (const t of chunkings) {
    test(t.name, () => {
      const framer = new TcpFramer();
      assert.deepEqual(feed(framer, t.chunks), t.expect);
      assert.equal(framer.pendingBytes, t.pending);
    });
  }

  test('one message split at every possible byte position, the length prefix included', () => {
    const bytes = framed(a);
    for (let at = 0; at <= bytes.length; at++) {
      const framer = new TcpFramer();
      const first = framer.push(bytes.subarray(0, at));
      assert.deepEqual(first, at === bytes.length ? [a] : [], `first chunk of ${at} bytes`);
      assert.equal(framer.pendingBytes, at === bytes.length ? 0 : at, `pending after ${at} bytes`);
      const second = framer.push(bytes.subarray(at));
      assert.deepEqual(first.concat(second), [a], `split at ${at}`);
      assert.equal(framer.pendingBytes, 0);
    }
  });

  test('two messages split at every pair of positions', () => {
    const bytes = framed(b, a, empty);
    for (let i = 0; i <= bytes.length; i++) {
      for (let j = i; j <= bytes.length; j++) {
        const framer = new TcpFramer();
        assert.deepEqual(feed(framer, splitAt(bytes, i, j)), [b, a, empty], `split at ${i} and ${j}`);
        assert.equal(framer.pendingBytes, 0);
      }
    }
  });

  test('a message fed one byte at a time comes out only with its last byte', () => {
    const bytes = framed(c);
    const framer = new TcpFramer();
    for (let i = 0; i < bytes.length - 1; i++) {
      assert.deepEqual(framer.push(bytes.subarray(i, i + 1)), [], `byte ${i}`);
      assert.equal(framer.pendingBytes, i + 1);
    }
    assert.deepEqual(framer.push(bytes.subarray(bytes.length - 1)), [c]);
    assert.equal(framer.pendingBytes, 0);
  });

  test('several messages fed one byte at a time come out in order', () => {
    const bytes = framed(a, empty, b, c);
    const framer = new TcpFramer();
    const out: Buffer[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...framer.push(Buffer.from([bytes[i]])));
    assert.deepEqual(out, [a, empty, b, c]);
    assert.equal(framer.pendingBytes, 0);
  });

  test('a 65535-byte message fed one byte at a time', () => {
    const bytes = framed(biggest);
    const framer = new TcpFramer();
    const out: Buffer[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...framer.push(bytes.subarray(i, i + 1)));
    assert.equal(out.length, 1);
    assert.ok(out[0].equals(biggest));
  });

  test('pendingBytes counts a partial message, then drops to what follows it', () => {
    const framer = new TcpFramer();
    const bytes = framed(c, a);
    assert.deepEqual(framer.push(bytes.subarray(0, 2)), []);
    assert.equal(framer.pendingBytes, 2);
    assert.deepEqual(framer.push(bytes.subarray(2, 200)), []);
    assert.equal(framer.pendingBytes, 200);
    assert.deepEqual(framer.push(bytes.subarray(200, 2 + c.length + 5)), [c]);
    assert.equal(framer.pendingBytes, 5);
    assert.deepEqual(framer.push(bytes.subarray(2 + c.length + 5)), [a]);
    assert.equal(framer.pendingBytes, 0);
  });

  test('a framer keeps working after many messages', () => {
    const framer = new TcpFramer();
    for (let n = 0; n < 50; n++) {
      const m = message(n * 13, n);
      const bytes = framed(m);
      const cut = Math.floor(bytes.length / 2);
      assert.deepEqual(feed(framer, [bytes.subarray(0, cut), bytes.subarray(cut)]), [m], `message ${n}`);
    }
    assert.equal(framer.pendingBytes, 0);
  });
});
