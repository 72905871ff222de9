// `divert monitor` end to end: real HTTP mirrors on loopback addresses, a real divert
// serve, the monitor as a process; what clients get is read with DNS queries.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Entry } from '../src/entry/entry.js';
import { runDivert } from './helpers/process.js';
import {
  FAST_CHECK,
  answersA,
  answersBecome,
  metric,
  mirrorsOf,
  startMirrors,
  startMonitor,
  startServe,
  waitFor,
  writeConfig,
  type Mirror,
  type MonitorProcess,
} from './monitor-fixtures.js';
import type { TestServer } from './helpers/divert.js';

const INTERVAL = 200;
const FALL = 2;
const RISE = 2;
/** Room for a loaded test machine: a push and a DNS query take a few ms, a busy scheduler more. */
const SLACK = 250;

interface Setup {
  server: TestServer;
  mirrors: Mirror[];
  monitor: MonitorProcess;
}

async function setup(
  service: Record<string, unknown>,
  addresses = ['127.0.0.2', '127.0.0.3', '127.0.0.4'],
  mirrorExtra: Record<string, unknown>[] = [],
  prepare?: (m: Mirror[]) => void,
): Promise<Setup> {
  const mirrors = await startMirrors(addresses);
  prepare?.(mirrors);
  const server = await startServe();
  const path = writeConfig({
    services: [{ name: 'web', names: ['www.shop.example'], check: FAST_CHECK, mirrors: mirrorsOf(mirrors, mirrorExtra), ...service }],
  });
  const monitor = await startMonitor(path, server);
  return { server, mirrors, monitor };
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  await s.monitor.stop();
  await s.server.close();
  for (const m of s.mirrors) await m.stop();
}

async function entry(server: TestServer, name: string): Promise<Entry> {
  return (await (await server.api(`/v1/names/${name}`)).json()) as Entry;
}

describe('a mirror stops and comes back', () => {
  test('it leaves the DNS answer within interval × fall + one interval, and returns after rise', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ policy: 'all-healthy' });
      const [a, b, c] = s.mirrors;
      await answersBecome(s.server, 'www.shop.example', [a.address, b.address, c.address], 5000);

      await b.stop();
      const gone = await answersBecome(s.server, 'www.shop.example', [a.address, c.address], 5000);
      assert.ok(
        gone <= INTERVAL * FALL + INTERVAL + SLACK,
        `left the answer after ${gone.toFixed(0)} ms (bound ${INTERVAL * FALL + INTERVAL} ms)`,
      );

      await b.start();
      const back = await answersBecome(s.server, 'www.shop.example', [a.address, b.address, c.address], 5000);
      // not at the first good check: rise of them in a row
      assert.ok(back >= INTERVAL * (RISE - 1) - 60, `back after ${back.toFixed(0)} ms, before ${RISE} good checks`);
      assert.ok(back <= INTERVAL * RISE + INTERVAL + SLACK, `back after ${back.toFixed(0)} ms`);

      // the monitor's stdout reaches this process in chunks of its own: the line may lag the DNS answer
      await waitFor(
        () => s!.monitor.logs().some((l) => l.msg === `mirror ${b.address}:${b.port} of web is up again after 2 good checks`),
        3000,
        'the up line',
      );
      const logs = s.monitor.logs();
      assert.ok(
        logs.some((l) => l.level === 40 && l.msg === `mirror ${b.address}:${b.port} of web is down after 2 failed checks (ECONNREFUSED)`),
        'the down transition is logged with its reason',
      );
    } finally {
      await teardown(s);
    }
  });

  test('failover: the best priority answers; the next one only while it is down', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ policy: 'failover' }, ['127.0.0.2', '127.0.0.3'], [{ priority: 0 }, { priority: 10 }]);
      const [primary, backup] = s.mirrors;
      await answersBecome(s.server, 'www.shop.example', [primary.address], 5000);
      primary.healthy = false; // answers 503 now
      await answersBecome(s.server, 'www.shop.example', [backup.address], INTERVAL * FALL + INTERVAL + SLACK);
      primary.healthy = true;
      await answersBecome(s.server, 'www.shop.example', [primary.address], INTERVAL * RISE + INTERVAL + SLACK);
    } finally {
      await teardown(s);
    }
  });
});

describe('least-loaded', () => {
  test('a mirror reporting load 0.95 leaves the answer and returns when its load drops', async () => {
    let s: Setup | undefined;
    try {
      const load = { path: '/load' };
      s = await setup({ policy: 'least-loaded', count: 2, check: { ...FAST_CHECK, load } }, undefined, [], ([a, b, c]) => {
        a.load = 0.1;
        b.load = 0.2;
        c.load = 0.3;
      });
      const [a, b, c] = s.mirrors;
      await answersBecome(s.server, 'www.shop.example', [a.address, b.address], 5000);

      b.load = 0.95;
      await answersBecome(s.server, 'www.shop.example', [a.address, c.address], 2000);

      // below the overload of 0.9 but not below 0.9 − 0.1: it stays out
      b.load = 0.85;
      for (const end = Date.now() + 5 * INTERVAL; Date.now() < end; await sleep(20)) {
        assert.deepEqual(await answersA(s.server, 'www.shop.example'), [a.address, c.address]);
      }
      const status = await s.monitor.status();
      assert.equal(status.services[0].mirrors.find((m) => m.address === b.address)!.overloaded, true);

      b.load = 0.05;
      await answersBecome(s.server, 'www.shop.example', [a.address, b.address], 2000);
      assert.match(
        await s.monitor.metrics(),
        new RegExp(`divert_monitor_mirror_load\\{service="web",mirror="${b.address.replace(/\./g, '\\.')}"\\} 0\\.05`),
      );
    } finally {
      await teardown(s);
    }
  });
});

describe('every mirror down', () => {
  test('the last answer stays, the monitor says so once, and an up mirror ends it', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ policy: 'all-healthy' }, ['127.0.0.2', '127.0.0.3']);
      const [a, b] = s.mirrors;
      await answersBecome(s.server, 'www.shop.example', [a.address, b.address], 5000);
      await a.stop();
      await answersBecome(s.server, 'www.shop.example', [b.address], 3000);
      const before = await entry(s.server, 'www.shop.example');

      await b.stop();
      await waitFor(async () => (await s!.monitor.status()).services[0].allDown, 3000, 'status showing all down');
      for (const end = Date.now() + 6 * INTERVAL; Date.now() < end; await sleep(25)) {
        assert.deepEqual(await answersA(s.server, 'www.shop.example'), [b.address], 'the last answer is kept, never an empty one');
      }
      assert.equal((await entry(s.server, 'www.shop.example')).version, before.version, 'nothing was written');
      const loud = s.monitor.logs().filter((l) => l.level === 50 && /EVERY MIRROR OF web IS DOWN/.test(l.msg));
      assert.equal(loud.length, 1, 'one error line per transition, not one per interval');
      assert.equal(metric(await s.monitor.metrics(), 'divert_monitor_service_all_down{service="web"}'), 1);

      await a.start();
      await answersBecome(s.server, 'www.shop.example', [a.address], 3000);
      assert.equal(metric(await s.monitor.metrics(), 'divert_monitor_service_all_down{service="web"}'), 0);
    } finally {
      await teardown(s);
    }
  });
});

describe('weighted', () => {
  test('the healthy mirrors with their weights and pick reach the server', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ policy: 'weighted', pick: 1 }, ['127.0.0.2', '127.0.0.3'], [{ weight: 3 }, { weight: 1 }]);
      const [a, b] = s.mirrors;
      const name = 'www.shop.example';
      let e = await waitFor(
        async () => {
          const got = await entry(s!.server, name);
          return got.a?.length === 2 ? got : undefined;
        },
        5000,
        'the weighted entry',
      );
      assert.deepEqual(e.weights, { [a.address]: 3, [b.address]: 1 });
      assert.equal(e.pick, 1);
      assert.equal((await answersA(s.server, name)).length, 1, 'pick 1: one address per answer');

      b.healthy = false;
      e = await waitFor(
        async () => {
          const got = await entry(s!.server, name);
          return got.a.length === 1 ? got : undefined;
        },
        3000,
        'the entry without the failed mirror',
      );
      assert.deepEqual(e.a, [a.address]);
      assert.deepEqual(e.weights, { [a.address]: 3 });
    } finally {
      await teardown(s);
    }
  });
});

describe('divert monitor status and metrics', () => {
  test("every mirror with its state, last check, latency and load, and each service's answer", async () => {
    let s: Setup | undefined;
    try {
      s = await setup(
        { policy: 'failover' },
        ['127.0.0.2', '127.0.0.3'],
        [{ site: 'fra1' }, { priority: 5, site: 'ams1' }],
        ([, b]) => (b.healthy = false),
      );
      const [a, b] = s.mirrors;
      await answersBecome(s.server, 'www.shop.example', [a.address], 5000);
      await waitFor(async () => (await s!.monitor.status()).services[0].names[0].inSync, 3000, 'in sync');

      const table = runDivert(['monitor', 'status', '--status', s.monitor.statusAt]);
      assert.equal(await table.exited(10_000), 0, table.stderr());
      const out = table.stdout();
      assert.match(out, /^monitor "monitor" since \S+; admin API http:\/\/127\.0\.0\.1:\d+ reachable$/m);
      assert.match(out, /^SERVICE\s+POLICY\s+ANSWER\s+STATE$/m);
      assert.match(out, /^web\s+failover\s+127\.0\.0\.2\s+ok$/m);
      assert.match(out, /^www\.shop\.example\s+web\s+127\.0\.0\.2\s+\d+\s+(?:-|[\d.]+)\s+in sync$/m);
      assert.match(
        out,
        new RegExp(`^web\\s+127\\.0\\.0\\.2:${a.port}\\s+fra1\\s+0\\s+1\\s+up\\s+yes\\s+\\d{4}-\\S+Z\\s+ok\\s+[\\d.]+ ms\\s+-$`, 'm'),
      );
      assert.match(
        out,
        new RegExp(
          `^web\\s+127\\.0\\.0\\.3:${b.port}\\s+ams1\\s+5\\s+1\\s+down\\s+no\\s+\\S+\\s+fail: HTTP 503 \\(expected 200\\)\\s+[\\d.]+ ms\\s+-$`,
          'm',
        ),
      );

      const json = runDivert(['monitor', 'status', '--json'], { env: { DIVERT_MONITOR_STATUS: s.monitor.statusAt } });
      assert.equal(await json.exited(10_000), 0, json.stderr());
      const report = JSON.parse(json.stdout()) as Awaited<ReturnType<MonitorProcess['status']>>;
      const web = report.services[0];
      assert.deepEqual(web.answer, [a.address]);
      assert.equal(web.mirrors[0].state, 'up');
      assert.equal(web.mirrors[1].lastResult, 'fail');
      assert.equal(typeof web.mirrors[0].latencyMs, 'number');
      assert.ok(Date.parse(web.mirrors[0].lastCheck!) > Date.now() - 5000);

      const metrics = await s.monitor.metrics();
      assert.equal(metric(metrics, `divert_monitor_mirror_up{service="web",mirror="${a.address}",site="fra1"}`), 1);
      assert.equal(metric(metrics, `divert_monitor_mirror_up{service="web",mirror="${b.address}",site="ams1"}`), 0);
      assert.equal(metric(metrics, 'divert_monitor_pushes_total{service="web",result="ok"}'), 1);
      assert.equal(metric(metrics, 'divert_monitor_service_answer_size{service="web"}'), 1);
      assert.equal(metric(metrics, 'divert_monitor_admin_up'), 1);
      assert.ok(metric(metrics, `divert_monitor_checks_total{service="web",mirror="${b.address}",result="fail"}`)! >= 1);
      assert.match(metrics, /^divert_monitor_check_duration_seconds_bucket\{le="0\.1",service="web"\} \d+$/m);

      const post = await fetch(`http://${s.monitor.statusAt}/status`, { method: 'POST' });
      assert.equal(post.status, 405, 'the status endpoint is read-only');
    } finally {
      await teardown(s);
    }
  });
});

describe("divert's query counts reach the monitor", () => {
  test("queries per second for each steered name, in status, the status table and the monitor's metrics", async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3']);
    const server = await startServe();
    let monitor: MonitorProcess | undefined;
    try {
      const path = writeConfig({
        queryRates: '1s',
        services: [
          {
            name: 'web',
            names: ['www.shop.example', 'quiet.shop.example'],
            policy: 'all-healthy',
            check: FAST_CHECK,
            mirrors: mirrorsOf(mirrors),
          },
        ],
      });
      monitor = await startMonitor(path, server);
      await answersBecome(
        server,
        'www.shop.example',
        mirrors.map((m) => m.address),
        5000,
      );
      // a steady 200 queries/s for www for 2.5 s (bounded: 500 queries), none for quiet
      const started = Date.now();
      for (let i = 0; i < 500 && Date.now() - started < 5000; i++) {
        await answersA(server, 'www.shop.example');
        await sleep(Math.max(0, started + (i + 1) * 5 - Date.now()));
      }
      const names = await waitFor(
        async () => {
          const n = (await monitor!.status()).services[0].names;
          return n[0].queriesPerSecond !== null && n[0].queriesPerSecond > 20 && n;
        },
        5000,
        'a rate for www.shop.example',
      );
      assert.ok(names[0].queriesPerSecond! <= 400, `www: ${names[0].queriesPerSecond}/s for a client sending 200/s`);
      assert.equal(names[1].queriesPerSecond, 0, 'quiet.shop.example had no queries');
      const qps = metric(await monitor.metrics(), 'divert_monitor_name_queries_per_second{service="web",name="www.shop.example"}');
      assert.ok(qps !== undefined && qps > 0, `the monitor's metric: ${qps}`);
      // the counts it reads: GET /v1/stats/names on divert's admin API
      const counts = (await (await server.api('/v1/stats/names')).json()) as { names: Record<string, number> };
      assert.ok(counts.names['www.shop.example'] >= 400, JSON.stringify(counts));
      const shown = runDivert(['monitor', 'status', '--status', monitor.statusAt]);
      assert.equal(await shown.exited(), 0);
      assert.match(shown.stdout(), /QUERIES\/S/);
      assert.match(shown.stdout(), /quiet\.shop\.example\s+web\s+\S+\s+\d+\s+0\s/);
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});
