// `divert monitor` and the address table: a restarted monitor converges without a flap, a
// person's change is never overwritten silently, and divert restarts are ridden out.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Entry, HistoryRecord } from '../src/entry/entry.js';
import { runDivert } from './helpers/process.js';
import { tempDir } from './helpers/temp-files.js';
import type { TestServer } from './helpers/divert.js';
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

const NAME = 'www.shop.example';
const MANUAL = '127.0.0.9';

function configFor(mirrors: Mirror[], top: Record<string, unknown> = {}): string {
  return writeConfig({
    ...top,
    services: [{ name: 'web', names: [NAME], policy: 'all-healthy', check: FAST_CHECK, mirrors: mirrorsOf(mirrors) }],
  });
}

async function history(server: TestServer): Promise<HistoryRecord[]> {
  return ((await (await server.api(`/v1/names/${NAME}/history`)).json()) as { history: HistoryRecord[] }).history;
}

/** A person's change through the admin API, as `divert names set` makes it. */
async function manualSet(server: TestServer, addresses: string[], who = 'cli:alice'): Promise<Entry> {
  const res = await server.api(`/v1/names/${NAME}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-divert-client': who },
    body: JSON.stringify({ a: addresses, aaaa: [], ttl: 30 }),
  });
  assert.equal(res.status, 200);
  return (await res.json()) as Entry;
}

/** Every distinct answer seen by querying every 10 ms while `during` runs. */
async function watchAnswers(server: TestServer, during: () => Promise<void>): Promise<Set<string>> {
  const seen = new Set<string>();
  let done = false;
  const poller = (async () => {
    while (!done) {
      seen.add((await answersA(server, NAME)).join(','));
      await sleep(10);
    }
  })();
  try {
    await during();
  } finally {
    done = true;
    await poller;
  }
  return seen;
}

describe('a monitor restarted mid-way', () => {
  test('reads the table, converges without a flap, and writes only what changed meanwhile', async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    const [a, b, c] = mirrors;
    const server = await startServe();
    let monitor: MonitorProcess | undefined;
    try {
      c.healthy = false;
      const path = configFor(mirrors);
      monitor = await startMonitor(path, server);
      await answersBecome(server, NAME, [a.address, b.address], 5000);
      await monitor.stop();
      assert.equal(monitor.proc.child.exitCode, 0, 'SIGTERM: a clean stop, exit 0');
      assert.match(monitor.proc.stdout(), /"msg":"stopping"/);
      const writes = (await history(server)).length;

      const seen = await watchAnswers(server, async () => {
        monitor = await startMonitor(path, server);
        await waitFor(async () => (await monitor!.status()).services[0].names[0].inSync, 5000, 'the new monitor in sync');
        await sleep(1000);
      });
      assert.deepEqual([...seen], [`${a.address},${b.address}`], 'no other answer was ever given');
      assert.equal((await history(server)).length, writes, 'the restarted monitor wrote nothing');

      // a change while no monitor runs is written once by the next one
      await monitor.stop();
      b.healthy = false;
      monitor = await startMonitor(path, server);
      await answersBecome(server, NAME, [a.address], 5000);
      await sleep(600);
      const records = await history(server);
      assert.equal(records.length, writes + 1, 'one write');
      assert.equal(records[0].by, 'monitor');
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});

describe('a manual change during monitoring', () => {
  test('is not overwritten: the monitor logs the conflict, holds, and resumes once the table matches', async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3']);
    const [a, b] = mirrors;
    const server = await startServe();
    let monitor: MonitorProcess | undefined;
    try {
      monitor = await startMonitor(configFor(mirrors), server);
      await answersBecome(server, NAME, [a.address, b.address], 5000);

      const manual = await manualSet(server, [MANUAL]);
      b.healthy = false; // the monitor now wants a change: its write meets the person's
      const warning = await waitFor(
        () => monitor!.logs().find((l) => l.level === 40 && l.name === NAME && l.by === 'cli:alice'),
        3000,
        'the conflict warning',
      );
      assert.equal(warning.version, manual.version);
      assert.match(
        warning.msg,
        new RegExp(
          `www\\.shop\\.example was changed by "cli:alice" \\(version ${manual.version}, 127\\.0\\.0\\.9\\); the monitor does not overwrite it`,
        ),
      );
      for (const end = Date.now() + 1500; Date.now() < end; await sleep(25)) {
        assert.deepEqual(await answersA(server, NAME), [MANUAL], 'the manual answer stands');
      }

      const report = await monitor.status();
      assert.equal(report.services[0].names[0].hold?.by, 'cli:alice');
      assert.equal(report.services[0].names[0].hold?.version, manual.version);
      const shown = runDivert(['monitor', 'status', '--status', monitor.statusAt]);
      assert.equal(await shown.exited(10_000), 0);
      assert.match(
        shown.stdout(),
        new RegExp(
          `^www\\.shop\\.example\\s+web\\s+127\\.0\\.0\\.9\\s+${manual.version}\\s+(?:-|[\\d.]+)\\s+HELD: changed by cli:alice \\(v${manual.version}\\); monitor writes again at \\S+Z$`,
          'm',
        ),
      );
      const metrics = await monitor.metrics();
      assert.equal(metric(metrics, `divert_monitor_conflicts_total{service="web",name="${NAME}"}`), 1);
      assert.equal(metric(metrics, 'divert_monitor_pushes_total{service="web",result="conflict"}'), 1);
      assert.equal(metric(metrics, `divert_monitor_name_held{service="web",name="${NAME}"}`), 1);

      // the person sets what the monitor wants: the hold ends, and later changes are written again
      await manualSet(server, [a.address]);
      await waitFor(async () => (await monitor!.status()).services[0].names[0].hold === null, 3000, 'the hold ending');
      b.healthy = true;
      await answersBecome(server, NAME, [a.address, b.address], 3000);
      assert.equal((await history(server))[0].by, 'monitor');
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });

  test('after manualHold the monitor says it resumes, and writes its answer', async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3']);
    const [a, b] = mirrors;
    const server = await startServe();
    let monitor: MonitorProcess | undefined;
    try {
      // refresh 1s: the monitor notices the change by reading, with nothing of its own to write
      monitor = await startMonitor(configFor(mirrors, { manualHold: '1500ms', refresh: '1s' }), server);
      await answersBecome(server, NAME, [a.address, b.address], 5000);
      const changed = Date.now();
      await manualSet(server, [MANUAL], 'cli:bob');
      await waitFor(async () => (await monitor!.status()).services[0].names[0].hold?.by === 'cli:bob', 3000, 'the hold');
      await answersBecome(server, NAME, [a.address, b.address], 5000);
      assert.ok(Date.now() - changed >= 1500, 'not before manualHold ran out');
      // the line is logged before the write, but reaches the test through the monitor's stdout, which may lag the DNS answer
      await waitFor(
        () => monitor!.logs().some((l) => l.level === 40 && l.msg === `the hold on ${NAME} ran out; the monitor writes its answer again`),
        3000,
        'the line saying the hold ran out',
      );
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});

describe('divert serve restarts', () => {
  test('the monitor rides out the outage with back-off and writes its answer over the re-seeded table', async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3']);
    const [a, b] = mirrors;
    const dir = tempDir('monitor-zone');
    const zone = join(dir, 'shop.zone');
    writeFileSync(zone, `${NAME}. 30 IN A ${MANUAL}\n`);
    let server = await startServe({ zones: [zone] });
    const ports = { listen: [`127.0.0.1:${server.port}`], admin: `127.0.0.1:${server.admin.port}` };
    let monitor: MonitorProcess | undefined;
    try {
      monitor = await startMonitor(configFor(mirrors), server);
      // the seed is what the table holds at start: the monitor replaces it without a hold
      await answersBecome(server, NAME, [a.address, b.address], 5000);

      await server.close();
      b.healthy = false;
      await sleep(1500);
      server = await startServe({ zones: [zone], ...ports });
      await answersBecome(server, NAME, [a.address], 10_000);

      await waitFor(() => monitor!.logs().some((l) => /answers again/.test(l.msg)), 2000, 'the recovery line');
      // the monitor's stdout reaches this process in chunks of its own: the line that follows may lag the DNS answer
      await waitFor(() => monitor!.logs().some((l) => /was reset by a divert restart/.test(l.msg)), 2000, 'the reset line');
      const logs = monitor.logs();
      assert.equal(logs.filter((l) => /^admin API unreachable/.test(l.msg)).length, 1, 'one line per outage');
      assert.equal(logs.filter((l) => /answers again/.test(l.msg)).length, 1, 'one line on recovery');
      assert.ok(logs.some((l) => /was reset by a divert restart \(zone seed\)/.test(l.msg)));
      assert.equal((await monitor.status()).services[0].names[0].hold, null, "a re-seed is not a person's change");
      assert.equal(monitor.proc.child.exitCode, null, 'still running');
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});

describe('an entry with local rules', () => {
  test('a mirror leaving takes its weight out of the rules that weigh it, and the write goes through', async () => {
    const mirrors = await startMirrors(['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    const server = await startServe();
    let monitor: MonitorProcess | undefined;
    try {
      const [a, b, c] = mirrors;
      const rules = [{ days: ['sat'], weights: { [a.address]: 2, [b.address]: 5 } }, { weights: { [b.address]: 3 } }];
      const put = await server.api(`/v1/names/${NAME}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ a: mirrors.map((m) => m.address), aaaa: [], ttl: 30, rules }),
      });
      assert.equal(put.status, 200);
      monitor = await startMonitor(configFor(mirrors), server);
      await waitFor(async () => (await monitor!.status()).services[0].names[0].inSync, 5000, 'the monitor in sync with the table');

      await b.stop();
      await answersBecome(server, NAME, [a.address, c.address], 5000);
      const entry = (await (await server.api(`/v1/names/${NAME}`)).json()) as Entry;
      assert.deepEqual(entry.rules, [{ days: ['sat'], weights: { [a.address]: 2 } }], "b's weights went, and the rule of nothing but them");
      assert.equal((await monitor.status()).services[0].names[0].error, null);
    } finally {
      await monitor?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});
