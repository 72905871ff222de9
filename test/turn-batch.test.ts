// The batch that sends a turn's forwarded queries to one upstream socket together
// (src/upstream/turn-batch.ts), against a pool that records what it is asked to send: the
// sockets themselves are tested with real ones in upstream-sockets.test.ts. What the pool
// relies on: the queries of one turn leave in one call, each with its own ID written into
// its own copy, a query settled meanwhile does not leave, what the socket refused comes
// back to the pool, and what settling a refused query sends goes in the next batch.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { TurnBatch, type BatchPool, type BatchedQuery } from '../src/upstream/turn-batch.js';

interface Socket {
  name: string;
  open: boolean;
}

interface Query extends BatchedQuery<Socket> {
  name: string;
}

function queryOn(socket: Socket, name: string, id: number): Query {
  // a client's query: ID 0x1234, then the name as its body
  const sent = Buffer.concat([Buffer.from([0x12, 0x34]), Buffer.from(name)]);
  return { owner: socket, sent, id, name };
}

/** A pool that records each call, and answers sendStaged with `take(count)`. */
function recordingPool(take: (count: number) => number = (count) => count) {
  const calls: { socket: string; messages: { id: number; body: string }[] }[] = [];
  const refused: { socket: string; names: string[]; errno: number }[] = [];
  const pool: BatchPool<Socket, Query> & { onRefused?: (queries: Query[]) => void } = {
    isOpen: (s) => s.open,
    sendStaged: (s, data, lengths, count) => {
      const messages = [];
      let at = 0;
      for (let i = 0; i < count; i++) {
        messages.push({ id: data.readUInt16BE(at), body: data.subarray(at + 2, at + lengths[i]).toString() });
        at += lengths[i];
      }
      calls.push({ socket: s.name, messages });
      return take(count);
    },
    refused: (s, queries, errno) => {
      refused.push({ socket: s.name, names: queries.map((q) => q.name), errno });
      pool.onRefused?.(queries);
    },
  };
  return { pool, calls, refused };
}

describe('a turn of forwarded queries to one upstream socket', () => {
  test("the turn's queries leave in one call, each with its own ID in its own copy; the callers' buffers are left as they were", async () => {
    const { pool, calls, refused } = recordingPool();
    const batch = new TurnBatch<Socket, Query>(pool);
    const s = { name: 'a', open: true };
    const queries = [queryOn(s, 'one', 101), queryOn(s, 'two', 202), queryOn(s, 'three', 303)];
    for (const q of queries) batch.add(s, q, false);
    assert.equal(calls.length, 0, 'nothing sent before the caller is done');
    await Promise.resolve();
    assert.deepEqual(calls, [
      {
        socket: 'a',
        messages: [
          { id: 101, body: 'one' },
          { id: 202, body: 'two' },
          { id: 303, body: 'three' },
        ],
      },
    ]);
    for (const q of queries) assert.equal(q.sent.readUInt16BE(0), 0x1234, "the client's ID kept in the caller's buffer");
    assert.deepEqual(refused, []);
  });

  test("a lone query leaves at the end of the caller's JavaScript too; DoT/DoH queries wait for the end of the poll phase", async () => {
    const { pool, calls } = recordingPool();
    const batch = new TurnBatch<Socket, Query>(pool);
    const s = { name: 'a', open: true };
    batch.add(s, queryOn(s, 'alone', 7), false);
    await Promise.resolve();
    assert.deepEqual(calls, [{ socket: 'a', messages: [{ id: 7, body: 'alone' }] }]);
    calls.length = 0;
    batch.add(s, queryOn(s, 'h2-a', 8), true);
    batch.add(s, queryOn(s, 'h2-b', 9), true);
    await Promise.resolve();
    assert.equal(calls.length, 0, 'still waiting after the microtasks');
    await nextTurn();
    assert.deepEqual(
      calls.map((c) => c.messages.map((m) => m.body)),
      [['h2-a', 'h2-b']],
    );
  });

  test('another socket ends the turn of the first; a query settled before the send does not leave; a closed socket sends nothing', async () => {
    const { pool, calls } = recordingPool();
    const batch = new TurnBatch<Socket, Query>(pool);
    const a = { name: 'a', open: true };
    const b = { name: 'b', open: true };
    const settled = queryOn(a, 'settled', 2);
    batch.add(a, queryOn(a, 'first', 1), false);
    batch.add(a, settled, false);
    settled.owner = null; // cancelled, say
    batch.add(b, queryOn(b, 'other', 3), false);
    assert.deepEqual(calls, [{ socket: 'a', messages: [{ id: 1, body: 'first' }] }], 'sent when the turn moved to b');
    b.open = false;
    await Promise.resolve();
    assert.equal(calls.length, 1, "nothing sent on b once it closed (its queries were settled by the pool's fail)");
  });

  test('what the socket refused goes back to the pool with its errno, and what that sends goes in a batch of its own', async () => {
    let taken = 2;
    const { pool, calls, refused } = recordingPool(() => taken);
    const batch = new TurnBatch<Socket, Query>(pool);
    const s = { name: 'a', open: true };
    // settling a refused query starts another attempt at once (as a hedged job would)
    pool.onRefused = (queries) => {
      taken = 64; // the socket has room again
      for (const q of queries) batch.add(s, queryOn(s, `retry-${q.name}`, q.id + 1000), false);
    };
    for (let i = 0; i < 5; i++) batch.add(s, queryOn(s, `q${i}`, i), false);
    await Promise.resolve();
    assert.deepEqual(refused, [{ socket: 'a', names: ['q2', 'q3', 'q4'], errno: 0 }], 'a short send: the rest refused');
    await Promise.resolve();
    assert.deepEqual(
      calls.map((c) => c.messages.map((m) => m.body)),
      [
        ['q0', 'q1', 'q2', 'q3', 'q4'],
        ['retry-q2', 'retry-q3', 'retry-q4'],
      ],
    );

    calls.length = 0;
    refused.length = 0;
    pool.onRefused = undefined;
    taken = -constants.errno.ECONNREFUSED;
    for (let i = 0; i < 3; i++) batch.add(s, queryOn(s, `r${i}`, i), false);
    await Promise.resolve();
    assert.deepEqual(refused, [{ socket: 'a', names: ['r0', 'r1', 'r2'], errno: constants.errno.ECONNREFUSED }]);
  });

  test('64 queries fill a batch: it leaves at once, and the 65th starts the next', async () => {
    const { pool, calls } = recordingPool();
    const batch = new TurnBatch<Socket, Query>(pool);
    const s = { name: 'a', open: true };
    for (let i = 0; i < 65; i++) batch.add(s, queryOn(s, `n${i}`, i), false);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].messages.length, 64);
    await Promise.resolve();
    assert.deepEqual(
      calls.map((c) => c.messages.length),
      [64, 1],
    );
  });
});
