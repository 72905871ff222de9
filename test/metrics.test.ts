// /metrics as an operator's Prometheus sees it, and the query log: every family is
// there, and each moves with the traffic that should move it, on both backends and
// (with DIVERT_TEST_WORKERS, see workers.metrics.test.ts) summed over the workers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BACKENDS, type Backend } from './helpers/backends.js';
import { decode, query, startDivert, tcpAsk, TEST_WORKERS, udpAsk, type TestServer } from './helpers/divert.js';
import { parseMetrics, sumOf, type Sample } from './helpers/metrics.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { loadServeConfig } from '../src/config/load.js';
import { QueryLog } from '../src/pipeline/query-log.js';
import { QueryStats, sumFigures, outcomeTotals, OTHER_NAMES } from '../src/pipeline/query-stats.js';

const entry = (a: string[], aaaa: string[] = []) => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ a, aaaa, ttl: 30 }),
});

for (const [backendName, makeBackend] of BACKENDS) {
  describe(`metrics and query log (${backendName}, ${TEST_WORKERS} worker(s))`, () => {
    let backend: Backend;
    let upstream: TestUpstream;
    let divert: TestServer;
    let dir: string;
    let before0: Sample[];
    let after0: Sample[];

    before(async () => {
      backend = await makeBackend('metrics');
      // answers forwarded names after 5 ms; "silent.test" never
      upstream = await startUpstream(async (q) => {
        if (q.packet.questions?.[0]?.name === 'silent.test') return null;
        await new Promise((resolve) => setTimeout(resolve, 5));
        return replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', class: 'IN', ttl: 60, data: '198.51.100.7' }] });
      });
      dir = mkdtempSync(join(tmpdir(), 'divert-metrics-'));
      divert = await startDivert({
        ...backend.options,
        upstream: [`127.0.0.1:${upstream.port}`],
        allow: ['127.0.0.1/32'],
        'metrics-max-names': 2,
        'query-log': join(dir, 'queries.log'),
        'upstream-timeout-ms': 200,
        'query-timeout-ms': 400,
      });
      for (const name of ['one.metrics.test', 'two.metrics.test', 'three.metrics.test']) {
        assert.equal((await divert.api(`/v1/names/${name}`, entry(['192.0.2.1'], ['2001:db8::1']))).status, 200);
      }
      before0 = parseMetrics(await (await divert.api('/metrics')).text());

      // the traffic: each outcome at least once, both transports, several types
      for (let i = 0; i < 5; i++) assert.equal(decode(await udpAsk(divert.port, query('one.metrics.test'))).rcode, 'NOERROR');
      for (let i = 0; i < 3; i++) assert.equal(decode(await tcpAsk(divert.port, query('two.metrics.test', 'AAAA'))).rcode, 'NOERROR');
      assert.equal(decode(await udpAsk(divert.port, query('three.metrics.test', 'MX'))).rcode, 'NOERROR');
      for (let i = 0; i < 4; i++) assert.equal(decode(await udpAsk(divert.port, query(`fwd${i}.example`, 'TXT'))).rcode, 'NOERROR');
      assert.equal(decode(await udpAsk(divert.port, query('silent.test'))).rcode, 'SERVFAIL');
      assert.equal(decode(await udpAsk(divert.port, query('one.metrics.test'), 3000, '127.0.0.1', '127.0.0.2')).rcode, 'REFUSED');
      const twoQuestions = query('one.metrics.test');
      twoQuestions.writeUInt16BE(2, 4);
      assert.equal(decode(await udpAsk(divert.port, twoQuestions)).rcode, 'FORMERR');
      const notify = query('one.metrics.test', 'SOA');
      notify[2] |= 4 << 3; // opcode NOTIFY
      assert.equal(decode(await udpAsk(divert.port, notify)).rcode, 'NOTIMP');
      const response = query('one.metrics.test');
      response[2] |= 0x80;
      assert.equal(await udpAsk(divert.port, response, 300), null, 'a message with QR set is dropped');
      // a change of the table
      assert.equal((await divert.api('/v1/names/one.metrics.test', entry(['192.0.2.2']))).status, 200);
      after0 = parseMetrics(await (await divert.api('/metrics')).text());
    });

    after(async () => {
      await divert?.close();
      await upstream?.close();
      await backend?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });

    const moved = (name: string, where: Record<string, string> = {}) => sumOf(after0, name, where) - sumOf(before0, name, where);

    test('queries by outcome, transport and type', () => {
      assert.equal(moved('divert_queries_total', { outcome: 'intercepted', transport: 'udp', type: 'A' }), 5);
      assert.equal(moved('divert_queries_total', { outcome: 'intercepted', transport: 'tcp', type: 'AAAA' }), 3);
      assert.equal(moved('divert_queries_total', { outcome: 'intercepted', type: 'MX' }), 1);
      assert.equal(moved('divert_queries_total', { outcome: 'forwarded', transport: 'udp', type: 'TXT' }), 4);
      assert.equal(moved('divert_queries_total', { outcome: 'servfail' }), 1);
      assert.equal(moved('divert_queries_total', { outcome: 'refused' }), 1);
      assert.equal(moved('divert_queries_total', { outcome: 'formerr' }), 1);
      assert.equal(moved('divert_queries_total', { outcome: 'notimp', type: 'SOA' }), 1);
      assert.equal(moved('divert_queries_total', { outcome: 'dropped' }), 1);
      assert.equal(moved('divert_queries_total'), 18);
    });

    test("latency histograms per outcome: counts match the queries, and forwarded ones took the upstream's time", () => {
      for (const [outcome, n] of [
        ['intercepted', 9],
        ['forwarded', 4],
        ['servfail', 1],
        ['refused', 1],
        ['formerr', 1],
        ['notimp', 1],
        ['dropped', 1],
      ] as const) {
        assert.equal(moved('divert_query_duration_seconds_count', { outcome }), n, outcome);
        assert.equal(moved('divert_query_duration_seconds_bucket', { outcome, le: '+Inf' }), n, `${outcome} +Inf bucket`);
      }
      // the upstream waits 5 ms: no forwarded query is in the buckets up to 2.5 ms
      assert.equal(moved('divert_query_duration_seconds_bucket', { outcome: 'forwarded', le: '0.0025' }), 0);
      assert.ok(moved('divert_query_duration_seconds_sum', { outcome: 'forwarded' }) >= 4 * 0.005);
      // a SERVFAIL after the 400 ms query timeout
      assert.equal(moved('divert_query_duration_seconds_bucket', { outcome: 'servfail', le: '0.25' }), 0);
      assert.equal(moved('divert_query_duration_seconds_bucket', { outcome: 'servfail', le: '0.5' }), 1);
      // buckets are cumulative
      const buckets = after0
        .filter((s) => s.name === 'divert_query_duration_seconds_bucket' && s.labels.outcome === 'intercepted')
        .map((s) => s.value);
      assert.deepEqual(
        buckets,
        [...buckets].sort((x, y) => x - y),
      );
    });

    test('queries per intercepted name, bounded by --metrics-max-names', () => {
      const names = after0.filter((s) => s.name === 'divert_name_queries_total');
      assert.ok(names.length <= 3, `at most 2 names and ${OTHER_NAMES} per process: ${JSON.stringify(names)}`);
      const total = names.reduce((n, s) => n + s.value, 0) - sumOf(before0, 'divert_name_queries_total');
      assert.equal(total, 9, 'every intercepted query counts once');
      if (TEST_WORKERS === '1') {
        assert.equal(moved('divert_name_queries_total', { name: 'one.metrics.test' }), 5);
        assert.equal(moved('divert_name_queries_total', { name: 'two.metrics.test' }), 3);
        assert.equal(moved('divert_name_queries_total', { name: OTHER_NAMES }), 1, 'the third name is over the limit');
      }
    });

    test('upstream state, round-trip time and attempts', () => {
      const label = `127.0.0.1:${upstream.port}`;
      assert.equal(sumOf(after0, 'divert_upstream_up', { upstream: label }), 1);
      const rtt = sumOf(after0, 'divert_upstream_rtt_seconds', { upstream: label });
      assert.ok(rtt >= 0.004 && rtt < 0.5, `smoothed RTT ${rtt}s for an upstream that waits 5 ms`);
      assert.equal(moved('divert_upstream_attempts_total', { upstream: label, result: 'answered' }), 4);
      assert.ok(moved('divert_upstream_attempts_total', { upstream: label, result: 'failed' }) >= 1, 'the silent query failed');
      assert.equal(moved('divert_forward_timeouts_total'), 1);
    });

    test('table size, readiness and changes; cache hit ratio; workers', () => {
      assert.equal(sumOf(after0, 'divert_table_names'), 3);
      assert.equal(sumOf(after0, 'divert_table_ready'), 1);
      assert.ok(moved('divert_table_changes_total') >= Number(TEST_WORKERS), 'each process applied the change');
      assert.ok(moved('divert_answer_cache_lookups_total', { result: 'hit' }) >= 1);
      const hits = sumOf(after0, 'divert_answer_cache_lookups_total', { result: 'hit' });
      const lookups = sumOf(after0, 'divert_answer_cache_lookups_total');
      assert.ok(Math.abs(sumOf(after0, 'divert_answer_cache_hit_ratio') - hits / lookups) < 1e-9);
      assert.ok(sumOf(after0, 'divert_answer_cache_names') >= 1);
      assert.equal(sumOf(after0, 'divert_workers'), Number(TEST_WORKERS));
      assert.ok(sumOf(after0, 'divert_process_resident_memory_bytes') > 0, 'process figures too');
      const workers = after0.filter((s) => s.name === 'divert_worker_resident_memory_bytes');
      assert.deepEqual(
        workers.map((s) => s.labels.worker).sort(),
        Array.from({ length: Number(TEST_WORKERS) }, (_, i) => String(i + 1)),
      );
      assert.ok(
        workers.every((s) => s.value > 10_000_000),
        "each worker's resident memory",
      );
      const loops = after0.filter((s) => s.name === 'divert_worker_event_loop_utilization');
      assert.equal(loops.length, Number(TEST_WORKERS));
      assert.ok(loops.every((s) => s.value >= 0 && s.value <= 1));
      assert.equal(after0.filter((s) => s.name === 'divert_worker_heap_used_bytes').length, Number(TEST_WORKERS));
      // the first worker (or the one process) always reads its UDP socket; another reads a shared one only while the first falls behind
      const reading = after0.filter((s) => s.name === 'divert_worker_udp_reading');
      assert.equal(reading.length, Number(TEST_WORKERS));
      assert.equal(sumOf(after0, 'divert_worker_udp_reading', { worker: '1' }), 1);
      assert.ok(reading.every((s) => s.value === 0 || s.value === 1));
      assert.equal(sumOf(after0, 'divert_worker_udp_spill_total', { worker: '1' }), 0, 'the first worker never leaves');
    });

    if (backendName === 'redis')
      test('Redis connection state', () => {
        assert.equal(sumOf(after0, 'divert_redis_up', { process: 'primary' }), 1);
        assert.equal(sumOf(after0, 'divert_redis_up', { process: 'workers' }), Number(TEST_WORKERS));
      });

    test('the query log has one JSON line per query, with what happened to it', async () => {
      const file = join(dir, 'queries.log');
      // the log is written asynchronously: wait for the last query's line
      let lines: Record<string, unknown>[] = [];
      for (let i = 0; i < 50; i++) {
        lines = readFileSync(file, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        if (lines.length >= 18) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(lines.length, 18);
      const first = lines.find((l) => l.name === 'one.metrics.test' && l.outcome === 'intercepted');
      assert.ok(first);
      assert.equal(first.type, 'A');
      assert.equal(first.transport, 'udp');
      assert.equal(first.client, '127.0.0.1');
      assert.equal(first.rcode, 'NOERROR');
      assert.equal(typeof first.ms, 'number');
      assert.ok(typeof first.time === 'string' && !Number.isNaN(Date.parse(first.time)));
      assert.ok(lines.some((l) => l.name === 'two.metrics.test' && l.transport === 'tcp' && l.type === 'AAAA'));
      assert.ok(lines.some((l) => l.name === 'silent.test' && l.outcome === 'servfail' && l.rcode === 'SERVFAIL'));
      assert.ok(lines.some((l) => l.client === '127.0.0.2' && l.outcome === 'refused' && l.rcode === 'REFUSED'));
      assert.ok(lines.some((l) => l.outcome === 'dropped' && l.rcode === null));
    });
  });
}

describe('query log rotation', () => {
  test('a reload opens the query log anew: logrotate can move it away first', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'divert-rotate-'));
    const upstream = await startUpstream((q) => replyTo(q));
    const flags = {
      listen: ['127.0.0.1:0'],
      admin: '127.0.0.1:0',
      'admin-token': 'test-token-0123456789abcdef',
      'log-level': 'silent',
      workers: TEST_WORKERS,
      upstream: [`127.0.0.1:${upstream.port}`],
      'query-log': join(dir, 'q.log'),
    };
    const divert = await startDivert(flags, { reloadConfig: () => loadServeConfig(flags, {}) });
    try {
      // the lines are written asynchronously (and the file, too, is opened so)
      const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
      const linesOf = async (file: string, n: number) => {
        for (let i = 0; i < 50 && read(file).length < n; i++) await new Promise((resolve) => setTimeout(resolve, 50));
        return read(file).map((l) => JSON.parse(l) as { name: string });
      };
      assert.equal(decode(await udpAsk(divert.port, query('before.rotate.test'))).rcode, 'NOERROR');
      assert.deepEqual(
        (await linesOf(join(dir, 'q.log'), 1)).map((l) => l.name),
        ['before.rotate.test'],
      );
      renameSync(join(dir, 'q.log'), join(dir, 'q.log.1'));
      const result = await divert.reload();
      assert.equal(result.ok, true);
      assert.equal(decode(await udpAsk(divert.port, query('after.rotate.test'))).rcode, 'NOERROR');
      assert.deepEqual(
        (await linesOf(join(dir, 'q.log'), 1)).map((l) => l.name),
        ['after.rotate.test'],
        'the new file has the query after the reload',
      );
      assert.deepEqual(
        (await linesOf(join(dir, 'q.log.1'), 1)).map((l) => l.name),
        ['before.rotate.test'],
        'the rotated file is left as it was',
      );
    } finally {
      await divert.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('query figures', () => {
  test('a name over the limit counts under _other; sums keep every name', () => {
    const a = new QueryStats(1);
    a.answeredBy('x.test');
    a.answeredBy('y.test');
    a.answeredBy('x.test');
    const b = new QueryStats(1);
    b.answeredBy('y.test');
    b.record('forwarded', 'tcp', 16, 0.003);
    const total = sumFigures([a.snapshot(), b.snapshot()]);
    assert.deepEqual(Object.fromEntries(total.names), { 'x.test': 2, [OTHER_NAMES]: 1, 'y.test': 1 });
    assert.equal(outcomeTotals(total).forwarded, 1);
  });

  test('--query-log-sample writes about that fraction of queries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'divert-qlog-'));
    try {
      let seed = 1;
      const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
      const log = new QueryLog({ to: join(dir, 'q.log'), sample: 0.1, random });
      let written = 0;
      for (let i = 0; i < 10_000; i++) {
        if (log.sampled()) {
          log.write(query('s.test'), { transport: 'udp', address: '127.0.0.1' }, 'forwarded', null, 1);
          written++;
        }
      }
      await log.close();
      const lines = readFileSync(join(dir, 'q.log'), 'utf8').split('\n').filter(Boolean);
      assert.equal(lines.length, written);
      assert.ok(written > 900 && written < 1100, `${written} of 10,000 written at 0.1`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
