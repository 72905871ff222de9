// Passive health end to end: a real divert serve, a real divert proxy relaying a name to TCP
// mirrors on 127.0.0.2 and 127.0.0.3, and a real divert monitor whose active checks are
// 30 s apart — so only the proxy's connect failures can explain a mirror leaving the answer
// within a second or two. Also the config's errors and a proxy that cannot be read.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMonitorConfig, passiveTarget } from '../src/monitor/config.js';
import { FailureWindow, growth } from '../src/monitor/passive.js';
import type { TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { freePort } from './helpers/redis.js';
import {
  answersA,
  answersBecome,
  metric,
  rejectsConfig as rejects,
  startMonitor,
  startServe,
  waitFor,
  writeConfig,
  type MonitorProcess,
} from './monitor-fixtures.js';
import { setAddresses, startProxy, startTcpMirrors, whoAnswers, type ProxyProcess, type TcpMirror } from './proxy-fixtures.js';

const NAME = 'www.shop.example';
const A = '127.0.0.2';
const B = '127.0.0.3';

const minimal = (passive: unknown, service: Record<string, unknown> = {}) => ({
  services: [
    {
      name: 'www',
      names: [NAME],
      check: { type: 'tcp', port: 8080 },
      mirrors: [{ address: '192.0.2.1' }, { address: '2001:db8::1', port: 8443 }],
      passive,
      ...service,
    },
  ],
});

describe('passive health: the config', () => {
  test('defaults, and the proxy target each mirror is counted under', () => {
    const s = parseMonitorConfig(minimal({}), 'm.yaml').services[0];
    assert.deepEqual(s.passive, { proxy: { host: '127.0.0.1', port: 5382 }, failures: 3, window: 10_000, interval: 1000 });
    // the mirror's port, else the check's; IPv6 bracketed as the proxy writes it
    assert.deepEqual(
      s.mirrors.map((m) => passiveTarget(s, m)),
      ['192.0.2.1:8080', '[2001:db8::1]:8443'],
    );
    const own = parseMonitorConfig(minimal({ proxy: '[::1]:6000', port: 443, failures: 1, window: '2s', interval: '100ms' }), 'm')
      .services[0];
    assert.deepEqual(own.passive, { proxy: { host: '::1', port: 6000 }, port: 443, failures: 1, window: 2000, interval: 100 });
    assert.deepEqual(
      own.mirrors.map((m) => passiveTarget(own, m)),
      ['192.0.2.1:443', '[2001:db8::1]:443'],
    );
    assert.equal(parseMonitorConfig(minimal(undefined), 'm').services[0].passive, undefined);
  });

  test('errors name the field and what is expected, on one line', () => {
    rejects(minimal({ proxy: 'localhost:5382' }), /^m\.yaml: services\[0\]\.passive\.proxy: "localhost:5382": "localhost" is not an IPv4/);
    rejects(minimal({ proxy: '127.0.0.1' }), /services\[0\]\.passive\.proxy: "127\.0\.0\.1": a port is required/);
    rejects(
      minimal({ proxy: '127.0.0.1:0' }),
      /services\[0\]\.passive\.proxy: expected the proxy's --status HOST:PORT, with a port other than 0/,
    );
    rejects(minimal({ failures: 0 }), /services\[0\]\.passive\.failures: expected at least 1$/);
    rejects(minimal({ window: 'soon' }), /services\[0\]\.passive\.window: expected a duration such as "500ms"/);
    rejects(minimal({ interval: '5s', window: '2s' }), /services\[0\]\.passive\.interval: expected at most the window/);
    rejects(minimal({ failure: 3 }), /services\[0\]\.passive\.failure: unknown field/);
    rejects(minimal(true), /services\[0\]\.passive: expected a map such as \{ proxy: 127\.0\.0\.1:5382/);
  });

  test('divert monitor stops on a bad passive block: one line, exit 2', async () => {
    const path = writeConfig(minimal({ failures: 'many' }));
    const run = runDivert(['monitor', '--config', path, '--status', '127.0.0.1:0'], { env: { DIVERT_ADMIN_TOKEN: 'x'.repeat(20) } });
    assert.equal(await run.exited(15_000), 2, run.stderr());
    assert.equal(run.stderr().trim(), `divert: ${path}: services[0].passive.failures: expected a whole number`);
  });

  test('counting: growth of a counter that only grows (a restarted proxy counts from 0), within the window', () => {
    assert.equal(growth(undefined, 2), 2);
    assert.equal(growth(5, 5), 0);
    assert.equal(growth(5, 8), 3);
    assert.equal(growth(9, 2), 2);
    assert.equal(growth(4, undefined), 0);
    const w = new FailureWindow(1000);
    assert.equal(w.add(0, 1), 1);
    assert.equal(w.add(500, 1), 2);
    assert.equal(w.add(1200, 1), 2, 'the first one left the window');
    assert.equal(w.add(5000, 0), 0);
  });
});

/** What a test started, filled in as it starts (teardown stops what there is). */
interface Setup {
  mirrors: TcpMirror[];
  server?: TestServer;
  proxy?: ProxyProcess;
  monitor?: MonitorProcess;
}

/** failover: A (priority 0) answers while up, B (priority 10) otherwise; checked by TCP connect on the mirrors' port. */
function monitorConfig(port: number, check: Record<string, unknown>, passive: Record<string, unknown>) {
  return {
    services: [
      {
        name: 'www',
        names: [NAME],
        policy: 'failover',
        check: { type: 'tcp', port, timeout: '500ms', rise: 2, fall: 2, ...check },
        passive,
        mirrors: [
          { address: A, priority: 0 },
          { address: B, priority: 10 },
        ],
      },
    ],
  };
}

async function teardown(s: Setup): Promise<void> {
  await s.monitor?.stop();
  await s.proxy?.stop();
  await s.server?.close();
  for (const m of s.mirrors) await m.stop();
}

/**
 * TCP mirrors on A and B, divert serve with NAME → A, a proxy relaying NAME, and a monitor
 * whose active checks are 30 s apart reading that proxy (3 failures in 10 s) every 200 ms;
 * resolves once both mirrors were checked and the proxy read, so counting has begun.
 */
async function startThroughProxy(s: Setup, activeInterval = '30s') {
  s.mirrors = await startTcpMirrors([A, B]);
  const server = (s.server = await startServe());
  const port = s.mirrors[0].port;
  await setAddresses(server, NAME, [A]);
  const proxy = (s.proxy = await startProxy({ services: [{ name: 'web', listen: '127.0.0.1:0', target: { name: NAME, port } }] }, server));
  const path = writeConfig(
    monitorConfig(port, { interval: activeInterval }, { proxy: proxy.statusAt, failures: 3, window: '10s', interval: '200ms' }),
  );
  const monitor = (s.monitor = await startMonitor(path, server));
  await waitFor(
    async () => {
      const status = (await monitor.status()).services[0];
      return status.ready && status.passive?.up === true && status.passive.lastRead !== null;
    },
    5000,
    'the monitor ready and reading the proxy',
  );
  // a read or two more: the next one counts
  await sleep(500);
  return { server, proxy, monitor, proxyPort: proxy.port('web'), mirrors: s.mirrors };
}

describe('passive health: connect failures through divert proxy', () => {
  test('a dead mirror leaves the DNS answer within moments, long before its next active check; it comes back only by active checks', async () => {
    const s: Setup = { mirrors: [] };
    try {
      const { server, proxy, monitor, proxyPort, mirrors } = await startThroughProxy(s);
      assert.deepEqual(await answersA(server, NAME), [A]);
      assert.equal(await whoAnswers(proxyPort), A);

      const killed = performance.now();
      await mirrors[0].stop();
      // clients keep connecting through the proxy: each connect to the dead mirror fails
      // (the entry holds no other address: the client is reset), and the proxy counts it
      for (let i = 0; i < 3; i++) await assert.rejects(whoAnswers(proxyPort), /the connection ended|ECONNRESET/);
      await answersBecome(server, NAME, [B], 2000);
      const gone = performance.now() - killed;
      assert.ok(gone < 2000, `left the answer ${gone.toFixed(0)} ms after the kill (the active interval is 30 s)`);
      // new connections through the proxy reach the live mirror
      await waitFor(async () => (await whoAnswers(proxyPort).catch(() => '')) === B, 2000, 'a new connection reaching 127.0.0.3');

      const status = (await monitor.status()).services[0];
      const [a, b] = status.mirrors;
      assert.equal(a.state, 'down');
      assert.match(a.reason ?? '', new RegExp(`^passive: 3 connect failures via proxy ${proxy.statusAt.replace(/\./g, '\\.')}$`));
      assert.equal(a.passiveFailures, 3);
      assert.equal(a.inAnswer, false);
      assert.deepEqual([b.state, b.inAnswer, b.passiveFailures], ['up', true, 0]);
      const metrics = await monitor.metrics();
      assert.equal(metric(metrics, `divert_monitor_passive_failures_total{service="www",mirror="${A}"}`), 3);
      assert.equal(metric(metrics, `divert_monitor_mirror_up{service="www",mirror="${A}",site=""}`), 0);
      assert.equal(metric(metrics, 'divert_monitor_passive_proxy_up{service="www"}'), 1);
      await waitFor(
        () =>
          monitor.logs().some((l) => l.level === 40 && /^mirror 127\.0\.0\.2:\d+ of www is down: 3 connect failures via proxy/.test(l.msg)),
        3000,
        'the passive down line',
      );
      const text = runDivert(['monitor', 'status', '--status', monitor.statusAt]);
      assert.equal(await text.exited(), 0, text.stderr());
      assert.match(text.stdout(), /127\.0\.0\.2:\d+ .* down \(passive: 3 connect failures via proxy 127\.0\.0\.1:\d+\) +no /);
      assert.match(text.stdout(), /www +127\.0\.0\.1:\d+ +3 connect failures in 10 s +reading every 200 ms/);

      // back on its feet: passive health never brings a mirror back, its active checks do
      // (rise good ones, 30 s apart here), so the answer stays on B
      await mirrors[0].start();
      await sleep(1500);
      assert.deepEqual(await answersA(server, NAME), [B]);
      assert.equal((await monitor.status()).services[0].mirrors[0].state, 'down');
    } finally {
      await teardown(s);
    }
  });

  test('a mirror marked down passively comes back after rise good active checks, and stays', async () => {
    const s: Setup = { mirrors: [] };
    try {
      // active checks 1 s apart, rise 2
      const { server, monitor, proxyPort, mirrors } = await startThroughProxy(s, '1s');
      await mirrors[0].stop();
      for (let i = 0; i < 3; i++) await assert.rejects(whoAnswers(proxyPort), /the connection ended|ECONNRESET/);
      await answersBecome(server, NAME, [B], 2000);
      assert.match((await monitor.status()).services[0].mirrors[0].reason ?? '', /^passive: 3 connect failures/);
      await mirrors[0].start();
      const back = await answersBecome(server, NAME, [A], 5000);
      // two good checks 1 s apart: not at the first one
      assert.ok(back >= 900, `back after ${back.toFixed(0)} ms, before 2 good checks`);
      const a = (await monitor.status()).services[0].mirrors[0];
      assert.deepEqual([a.state, a.reason], ['up', '2 good checks']);
      // the failures counted before do not put it down again
      await sleep(600);
      assert.deepEqual(await answersA(server, NAME), [A]);
      assert.equal(await whoAnswers(proxyPort), A);
    } finally {
      await teardown(s);
    }
  });

  test('fewer failures than `failures` within the window leave the mirror up', async () => {
    const s: Setup = { mirrors: [] };
    try {
      const { server, monitor, proxyPort, mirrors } = await startThroughProxy(s);
      await mirrors[0].stop();
      for (let i = 0; i < 2; i++) await assert.rejects(whoAnswers(proxyPort), /the connection ended|ECONNRESET/);
      await waitFor(async () => (await monitor.status()).services[0].mirrors[0].passiveFailures === 2, 2000, 'two failures counted');
      await sleep(600);
      assert.deepEqual(await answersA(server, NAME), [A]);
      assert.equal((await monitor.status()).services[0].mirrors[0].state, 'up');
    } finally {
      await teardown(s);
    }
  });

  test('a proxy that cannot be read: logged once, shown in status, passive health paused while the active checks go on; resumed when it can', async () => {
    const s: Setup = { mirrors: [] };
    try {
      const mirrors = (s.mirrors = await startTcpMirrors([A, B]));
      const server = (s.server = await startServe());
      const port = mirrors[0].port;
      // the proxy is not started yet: nothing listens on its status port
      const statusAt = `127.0.0.1:${await freePort()}`;
      const path = writeConfig(
        monitorConfig(port, { interval: '200ms', timeout: '150ms' }, { proxy: statusAt, interval: '100ms', window: '1s' }),
      );
      const monitor = (s.monitor = await startMonitor(path, server));
      await answersBecome(server, NAME, [A], 5000);
      const passive = await waitFor(
        async () => {
          const p = (await monitor.status()).services[0].passive;
          return p?.up === false ? p : undefined;
        },
        3000,
        'passive health paused in status',
      );
      assert.equal(passive.proxy, statusAt);
      assert.equal(passive.error, 'ECONNREFUSED');
      assert.match(passive.since ?? '', /^\d{4}-\d\d-\d\dT/);
      assert.equal(passive.lastRead, null);

      // the active checks go on: a stopped mirror still leaves the answer
      await mirrors[0].stop();
      await answersBecome(server, NAME, [B], 3000);
      assert.equal(monitor.proc.child.exitCode, null, 'the monitor runs on');
      // reads go on every 100 ms: still one line
      await sleep(500);

      const paused = monitor.logs().filter((l) => l.msg.startsWith(`divert proxy at ${statusAt} cannot be read`));
      assert.equal(paused.length, 1, 'one line for the whole outage, not one per read');
      assert.equal(paused[0].level, 40);
      assert.match(paused[0].msg, /\(ECONNREFUSED\): passive health of www paused, the active checks go on$/);
      assert.equal(metric(await monitor.metrics(), 'divert_monitor_passive_proxy_up{service="www"}'), 0);
      const text = runDivert(['monitor', 'status', '--status', monitor.statusAt]);
      assert.equal(await text.exited(), 0, text.stderr());
      assert.match(
        text.stdout(),
        /www +127\.0\.0\.1:\d+ +3 connect failures in 1 s +PAUSED: proxy unreachable since \S+ \(ECONNREFUSED\); active checks go on/,
      );

      // the proxy starts: passive health resumes, with one line
      s.proxy = await startProxy(
        { services: [{ name: 'web', listen: '127.0.0.1:0', target: { name: NAME, port } }] },
        server,
        undefined,
        statusAt,
      );
      await waitFor(async () => (await monitor.status()).services[0].passive?.up === true, 3000, 'passive health resumed in status');
      await waitFor(
        () => monitor.logs().some((l) => l.msg === `divert proxy at ${statusAt} can be read again: passive health of www resumes`),
        3000,
        'the resume line',
      );
      assert.equal(metric(await monitor.metrics(), 'divert_monitor_passive_proxy_up{service="www"}'), 1);
    } finally {
      await teardown(s);
    }
  });
});
