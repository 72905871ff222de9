// The forwarder's accounting of upstream failures, with real sockets: what marks an
// upstream down must be counted once per attempt, however the attempt ends.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Forwarder } from '../src/upstream/forwarder.js';
import { UpstreamPool } from '../src/upstream/upstream-pool.js';
import { readQuery } from '../src/wire/query.js';
import { query } from './helpers/divert.js';
import { FLAG, ipv4, rawReply, rr } from './helpers/raw.js';
import { startUpstream } from './helpers/upstream.js';

test('an attempt that is late and then reset counts once against its upstream', async (t) => {
  // accepts, says nothing, and resets the connection after the attempt timeout has passed
  let attemptsToSlow = 0;
  const resetter = createServer((socket) => {
    attemptsToSlow++;
    setTimeout(() => socket.resetAndDestroy(), 80); // 30 ms after the attempt is marked late
  });
  await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
  t.after(() => resetter.close());
  // the other upstream answers only after the resets, so they happen while the query is open
  const good = await startUpstream(async (uq) => {
    await new Promise((r) => setTimeout(r, 200));
    return rawReply(uq.raw, { flags: FLAG.QR | FLAG.RA, answers: [rr(uq.packet.questions![0].name, 1, 1, 60, ipv4('203.0.113.9'))] });
  });
  t.after(() => good.close());

  const slow = { host: '127.0.0.1', port: (resetter.address() as { port: number }).port };
  const pool = new UpstreamPool([slow, { host: '127.0.0.1', port: good.port }], {
    failuresToMarkDown: 5,
    initialBackoffMs: 1000,
    maxBackoffMs: 1000,
  });
  const forwarder = new Forwarder(pool, { attemptTimeoutMs: 50, queryTimeoutMs: 1000 });
  try {
    const msg = query('late.test');
    const q = readQuery(msg);
    assert.ok(typeof q !== 'string');
    const reply = await forwarder.forward(msg, q.questionEnd, 'tcp');
    assert.ok(reply, 'the second upstream answered');
    // hedging sends it an attempt every other 50 ms; each one fails once, late or reset,
    // never twice (the last one may end with the query, before it is either)
    const failures = pool.upstreams[0].consecutiveFailures;
    assert.ok(failures >= 1, 'the slow upstream was charged');
    assert.ok(failures <= attemptsToSlow, `${failures} failures for ${attemptsToSlow} attempts`);
  } finally {
    forwarder.close(); // its pooled connection to the good upstream held good.close() until it idled out (15 s)
  }
});
