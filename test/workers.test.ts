// Several worker processes behave as one server: every worker gives the same answers and
// applies every change of the table, with either backend; a worker that dies is replaced
// and the port keeps answering. (The suites of intercept, forward, robustness and the
// admin API run again with two workers through the test/workers.*.test.ts files.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, probeReplies, query, startDivert, udpAsk, type TestServer } from './helpers/divert.js';
import { BACKENDS } from './helpers/backends.js';
import { RCODE, replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { sumOf } from './helpers/metrics.js';

const WORKERS = 2;
const CHANGES = 100;

const json = (body: unknown, method = 'PUT'): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});
const addressesOf = (reply: Buffer | null) =>
  decode(reply)
    .answers!.map((a) => (a as { data: string }).data)
    .sort();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` holds, for at most `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await sleep(20);
  }
  return check();
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`${WORKERS} workers (${backend} table)`, () => {
    let upstream: TestUpstream;
    let divert: TestServer;
    let cleanup: () => Promise<void>;

    before(async () => {
      upstream = await startUpstream((q) => replyTo(q, {}, RCODE.NXDOMAIN));
      const dir = mkdtempSync(join(tmpdir(), 'divert-zone-'));
      writeFileSync(join(dir, 'w.zone'), '$ORIGIN w.test.\n$TTL 60\nseeded IN A 192.0.2.1\n*.wild IN A 192.0.2.4\n');
      const b = await makeBackend('workers');
      cleanup = b.cleanup;
      divert = await startDivert({ ...b.options, upstream: [`127.0.0.1:${upstream.port}`], zones: [dir], workers: String(WORKERS) });
    });
    after(async () => {
      await divert.close();
      await upstream.close();
      await cleanup();
    });

    test('runs the number of worker processes asked for, none of them this process', () => {
      const pids = divert.debug.pids();
      assert.equal(pids.length, WORKERS);
      assert.equal(new Set(pids).size, WORKERS);
      assert.ok(!pids.includes(process.pid));
    });

    test('every worker gives the same answer as the socket, for a seeded name and a wildcard', async () => {
      for (const name of ['seeded.w.test', 'any.wild.w.test']) {
        const overSocket = await udpAsk(divert.port, query(name));
        const probes = await probeReplies(divert, query(name));
        assert.equal(probes.length, WORKERS);
        for (const reply of probes) assert.deepEqual(addressesOf(reply), addressesOf(overSocket), name);
      }
    });

    // which worker answers is the kernel's choice and divert's (udp-batch.test.ts: a worker
    // other than the first reads only while the first falls behind), not this test's
    test('queries from many clients at once are all answered, each once', async () => {
      const before = await divert.debug.statsEach();
      const asked = 400;
      const replies = await Promise.all(Array.from({ length: asked }, () => udpAsk(divert.port, query('seeded.w.test'))));
      for (const reply of replies) assert.deepEqual(addressesOf(reply), ['192.0.2.1']);
      const afterStats = await divert.debug.statsEach();
      const served = afterStats.map((s, i) => s.counts.intercepted - before[i].counts.intercepted);
      assert.equal(
        served.reduce((x, y) => x + y, 0),
        asked,
        `answered per worker: ${served.join(', ')}`,
      );
    });

    test(`each of ${CHANGES} changes in a row reaches every worker, and the last one is what all of them answer`, async () => {
      const before = await divert.debug.statsEach();
      for (let i = 1; i <= CHANGES; i++) {
        const put = await divert.api('/v1/names/moving.w.test', json({ a: [`198.51.100.${i}`], ttl: 30 }));
        assert.equal(put.status, 200);
      }
      const final = ['198.51.100.' + CHANGES];
      const converged = await eventually(async () => {
        const probes = await probeReplies(divert, query('moving.w.test'));
        return probes.length === WORKERS && probes.every((r) => r !== null && addressesOf(r).join() === final.join());
      });
      assert.ok(converged, 'every worker answers the last change');
      assert.deepEqual(addressesOf(await udpAsk(divert.port, query('moving.w.test'))), final);
      const seen = await eventually(async () => {
        const now = await divert.debug.statsEach();
        return now.every((s, i) => s.changes - before[i].changes === CHANGES);
      });
      const now = await divert.debug.statsEach();
      assert.ok(
        seen,
        `changes applied per worker: ${now.map((s, i) => s.changes - before[i].changes).join(', ')} (expected ${CHANGES} each)`,
      );
    });

    test('a write is acknowledged only when every worker answers with it: no query after the reply gets the old address', async () => {
      for (let i = 1; i <= 30; i++) {
        const address = `203.0.113.${i}`;
        const put = await divert.api('/v1/names/acked.w.test', json({ a: [address], ttl: 30 }));
        assert.equal(put.status, 200);
        // no waiting: straight after the reply, over the socket and in every worker
        assert.deepEqual(addressesOf(await udpAsk(divert.port, query('acked.w.test'))), [address], `change ${i} over the socket`);
        for (const reply of await probeReplies(divert, query('acked.w.test')))
          assert.deepEqual(addressesOf(reply), [address], `change ${i} in a worker`);
      }
    });

    test('a deleted name is forwarded by every worker', async () => {
      await divert.api('/v1/names/gone.w.test', json({ a: ['192.0.2.77'] }));
      const del = await divert.api('/v1/names/gone.w.test', { method: 'DELETE' });
      assert.equal(del.status, 204);
      const forwarded = await eventually(async () =>
        (await probeReplies(divert, query('gone.w.test'))).every((r) => decode(r).rcode === 'NXDOMAIN'),
      );
      assert.ok(forwarded, 'every worker forwards the deleted name (the upstream says NXDOMAIN)');
    });

    test('an import of 2,500 names reaches every worker whole and once, in order with the writes around it', async () => {
      const before = await divert.debug.statsEach();
      assert.equal((await divert.api('/v1/names/n0.many.w.test', json({ a: ['192.0.2.99'] }))).status, 200);
      const lines = ['$ORIGIN many.w.test.'];
      for (let i = 0; i < 2500; i++) lines.push(`n${i} IN A 10.1.${i >> 8}.${i & 255}`);
      lines.push('*.wild IN A 192.0.2.50');
      const imported = await divert.api('/v1/import', {
        method: 'POST',
        headers: { 'content-type': 'text/dns' },
        body: lines.join('\n') + '\n',
      });
      assert.equal(imported.status, 200);
      assert.equal((await divert.api('/v1/names/n2499.many.w.test', json({ a: ['192.0.2.98'] }))).status, 200);
      // no waiting: a write is acknowledged once every worker has it
      const expected: [string, string[]][] = [
        ['n0.many.w.test', ['10.1.0.0']],
        ['n1234.many.w.test', ['10.1.4.210']],
        ['n2498.many.w.test', ['10.1.9.194']],
        ['n2499.many.w.test', ['192.0.2.98']],
        ['any.wild.many.w.test', ['192.0.2.50']],
      ];
      for (const [name, addresses] of expected) {
        for (const reply of await probeReplies(divert, query(name))) assert.deepEqual(addressesOf(reply), addresses, name);
      }
      const now = await divert.debug.statsEach();
      assert.deepEqual(
        now.map((s, i) => s.changes - before[i].changes),
        before.map(() => 2503),
        'changes applied per worker: the import, and a write before and after it',
      );
    });

    test("metrics add up the workers' figures", async () => {
      const total = await divert.stats();
      const each = await divert.debug.statsEach();
      assert.equal(
        total.counts.intercepted,
        each.reduce((n, s) => n + s.counts.intercepted, 0),
      );
      const text = await (await divert.api('/metrics')).text();
      assert.ok(sumOf(text, 'divert_queries_total', { outcome: 'intercepted' }) >= total.counts.intercepted);
    });

    test('a worker killed is replaced, the port keeps answering, and the new worker has the table', async () => {
      const [victim] = divert.debug.pids();
      process.kill(victim, 'SIGKILL');
      const replaced = await eventually(async () => {
        const pids = divert.debug.pids();
        return pids.length === WORKERS && !pids.includes(victim);
      }, 10_000);
      assert.ok(replaced, "a new worker took the dead one's place");
      // queries in the meantime and afterwards are answered by whichever worker is alive
      for (let i = 0; i < 20; i++)
        assert.deepEqual(addressesOf(await udpAsk(divert.port, query('moving.w.test'))), ['198.51.100.' + CHANGES]);
      const ready = await eventually(async () => {
        const probes = await probeReplies(divert, query('moving.w.test'));
        return probes.length === WORKERS && probes.every((r) => r !== null && addressesOf(r).join() === '198.51.100.' + CHANGES);
      }, 10_000);
      assert.ok(ready, 'the new worker answers from the current table');
    });
  });
}
