// A flood of forwarded queries towards a silent upstream used to hold each query's state
// for the whole query timeout, without bound (40,000 queries a second took a worker from
// 104 to 300 MB in 5 s). --forward-max-in-flight caps the queries waiting for an upstream;
// beyond it a query gets SERVFAIL at once, and the cap frees up as the waiting ones end.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query, startDivert, udpAsk, type TestServer } from './helpers/divert.js';
import { startUpstream, replyTo, type TestUpstream } from './helpers/upstream.js';
import { sumOf } from './helpers/metrics.js';

describe('--forward-max-in-flight', () => {
  let upstream: TestUpstream;
  let divert: TestServer;
  let silent = true;

  before(async () => {
    upstream = await startUpstream((q) =>
      silent ? null : replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.3' }] }),
    );
    divert = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      'forward-max-in-flight': '10',
      'query-timeout-ms': '1500',
      'upstream-timeout-ms': '1500',
      workers: '1',
    });
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  test('beyond the cap a forwarded query gets SERVFAIL at once; the cap frees up as the waiting ones end', async () => {
    const started = Date.now();
    const asked = Array.from({ length: 30 }, (_, i) => query(`q${i}.inflight.example`));
    const replies = await Promise.all(asked.map((q) => udpAsk(divert.port, q, 5000)));
    const rcodes = replies.map((r) => decode(r).rcode);
    // each to its own client, with its ID and question: those refused at once as those that went up under another ID
    assert.deepEqual(
      replies.map((r) => [r?.readUInt16BE(0), decode(r).questions![0].name]),
      asked.map((q, i) => [q.readUInt16BE(0), `q${i}.inflight.example`]),
    );
    assert.deepEqual(
      rcodes.filter((r) => r !== 'SERVFAIL'),
      [],
      'every query got SERVFAIL: 20 at once, 10 at the query timeout',
    );
    assert.equal(upstream.queries.length, 10, 'only 10 reached the upstream');
    const metrics = await (await divert.api('/metrics')).text();
    assert.equal(sumOf(metrics, 'divert_forward_overloaded_total'), 20);
    assert.equal(sumOf(metrics, 'divert_forward_timeouts_total'), 10);
    assert.ok(Date.now() - started >= 1400, 'the ten waited for the query timeout');

    // the waiting ones have ended: forwarding works again
    silent = false;
    await sleep(100);
    const d = decode(await udpAsk(divert.port, query('after.inflight.example')));
    assert.deepEqual(
      d.answers!.map((a) => (a as { data: unknown }).data),
      ['203.0.113.3'],
    );
  });
});
