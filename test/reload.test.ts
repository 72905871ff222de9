// Reloading `divert serve` with SIGHUP, as an operator does it: the real binary, a config
// file rewritten in place, `kill -HUP`, and real queries over loopback. What an operator
// relies on: no query is lost or fails across a reload, the new upstreams take over at
// once and the old ones get nothing more, a bad new configuration changes nothing (one
// error line, the server keeps serving), new zone names are answered, the allow list and
// log level change, and an option that needs a restart is named in a warning while the
// rest is applied. With one process and with two workers.

import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { loadServeConfig } from '../src/config/load.js';
import { decode, probeReplies, query, startDivert, TEST_UDP_BATCH, udpAsk } from './helpers/divert.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';

const TOKEN = 'reload-test-token-0123456789abcdef';
/** A name no zone holds: forwarded. Upstream A answers it with ADDRESS_A, B with ADDRESS_B. */
const NAME = 'fwd.reload.test';
const ADDRESS_A = '198.51.100.1';
const ADDRESS_B = '198.51.100.2';
const RCODE_REFUSED = 'REFUSED';

interface FakeUpstream extends TestUpstream {
  /** When each query arrived (Date.now()). */
  arrivals: number[];
}

/** An upstream that answers every A query with `address`, after `delayMs`. */
async function fakeUpstream(address: string, delayMs = 0): Promise<FakeUpstream> {
  const arrivals: number[] = [];
  const upstream = await startUpstream(async (q) => {
    arrivals.push(Date.now());
    if (delayMs > 0) await sleep(delayMs);
    const name = q.packet.questions![0].name;
    return replyTo(q, { answers: [{ type: 'A', class: 'IN', name, ttl: 60, data: address }] as dnsPacket.Answer[] });
  });
  return Object.assign(upstream, { arrivals });
}

/** Clean-ups run last registered first: divert stops before its upstreams. */
function deferrer(t: TestContext): (cleanup: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    for (const cleanup of stack.reverse()) await cleanup();
  });
  return (cleanup) => void stack.push(cleanup);
}

/** Writes the config file as an editor does: a new file renamed over the old one. */
function writeConfig(path: string, config: Record<string, unknown>): void {
  writeFileSync(`${path}.new`, JSON.stringify(config, null, 2));
  renameSync(`${path}.new`, path);
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface Serve {
  proc: DivertProcess;
  dir: string;
  configPath: string;
  port: number;
  admin: string;
  /** Every JSON log line so far. */
  logs(): LogLine[];
  /** Sends SIGHUP; resolves with the reload's outcome line (applied, or refused). */
  hup(): Promise<{ line: LogLine; since: number }>;
  /** The log lines written since index `since` of logs(). */
  since(index: number): LogLine[];
  ask(name?: string): Promise<{ rcode: string; addresses: string[] }>;
}

const logLines = (text: string): LogLine[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);

async function serve(t: TestContext, workers: number, config: Record<string, unknown>): Promise<Serve> {
  const defer = deferrer(t);
  const dir = mkdtempSync(join(tmpdir(), 'divert-reload-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const configPath = join(dir, 'divert.yaml');
  writeConfig(configPath, config);
  const proc = runDivert(['serve', '--config', configPath, '--admin-token', TOKEN, '--workers', String(workers)]);
  defer(() => proc.stop());
  const line = await proc.listeningLine(20_000);
  const port = Number(/:(\d+)$/.exec(line.listen[0])![1]);
  const logs = () => logLines(proc.stdout());
  const since = (index: number) => logs().slice(index);
  const hup = async () => {
    const mark = logs().length;
    proc.child.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const outcome = since(mark).find(
        (l) => l.msg.startsWith('configuration reloaded') || l.msg.startsWith('reload refused') || l.msg.startsWith('reload failed'),
      );
      if (outcome) return { line: outcome, since: mark };
      assert.ok(Date.now() < deadline, `no reload outcome logged within 10 s; stdout: ${proc.stdout()} stderr: ${proc.stderr()}`);
      await sleep(10);
    }
  };
  const ask = async (name = NAME) => {
    const reply = decode(await udpAsk(port, query(name), 2000));
    return { rcode: reply.rcode ?? 'NOERROR', addresses: (reply.answers ?? []).map((a) => (a as { data: string }).data).sort() };
  };
  return { proc, dir, configPath, port, admin: `http://${line.admin}`, logs, hup, since, ask };
}

/** UDP sockets on this machine connected to 127.0.0.1:`port` (divert's sockets to that upstream), as `ss -u dst` shows them. */
function socketsTo(port: number): number {
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim().split(/\s+/)[2] === remote).length;
}

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

const upstreamOf = (u: TestUpstream) => `127.0.0.1:${u.port}`;

/** Upstreams A and B (answering ADDRESS_A and ADDRESS_B), closed when the test ends. */
async function twoUpstreams(t: TestContext) {
  const defer = deferrer(t);
  const a = await fakeUpstream(ADDRESS_A);
  const b = await fakeUpstream(ADDRESS_B);
  defer(() => a.close());
  defer(() => b.close());
  return { defer, a, b };
}

for (const workers of [1, 2]) {
  describe(`SIGHUP reload, --workers ${workers}`, () => {
    test('upstreams change under a steady stream of queries: none lost, none SERVFAIL, none to the old upstream after the reload', async (t) => {
      const { a, b } = await twoUpstreams(t);
      const s = await serve(t, workers, { listen: '127.0.0.1:0', upstream: [upstreamOf(a)] });

      const TOTAL = 3000;
      const CONCURRENCY = 16;
      const RELOAD_AFTER = 1000;
      const deadline = Date.now() + 30_000;
      type Record = { sentAt: number; rcode: string | null; address: string | null };
      const records: Record[] = [];
      let issued = 0;
      let reloadedAt = Infinity;
      let reloading: Promise<void> | undefined;
      const reload = async () => {
        writeConfig(s.configPath, { listen: '127.0.0.1:0', upstream: [upstreamOf(b)] });
        assert.ok(socketsTo(a.port) > 0, 'divert holds sockets to upstream A before the reload');
        const { line } = await s.hup();
        reloadedAt = Date.now();
        assert.match(line.msg, /^configuration reloaded: upstreams 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+/);
        assert.ok(line.msg.includes(`${upstreamOf(a)} → ${upstreamOf(b)}`), line.msg);
      };
      const client = async () => {
        while (issued < TOTAL && Date.now() < deadline) {
          issued++;
          const sentAt = Date.now();
          const reply = await udpAsk(s.port, query(NAME), 2000);
          const packet = reply ? decode(reply) : null;
          records.push({
            sentAt,
            rcode: packet ? (packet.rcode ?? 'NOERROR') : null,
            address: (packet?.answers?.[0] as { data?: string } | undefined)?.data ?? null,
          });
          if (records.length === RELOAD_AFTER) {
            reloading = reload();
            reloading.catch(() => {}); // awaited below
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, client));
      await reloading;

      const lost = records.filter((r) => r.rcode === null).length;
      const failed = records.filter((r) => r.rcode !== null && r.rcode !== 'NOERROR').length;
      const fromA = records.filter((r) => r.address === ADDRESS_A).length;
      const fromB = records.filter((r) => r.address === ADDRESS_B).length;
      const afterReload = records.filter((r) => r.sentAt > reloadedAt);
      const aAfterReload = a.arrivals.filter((at) => at > reloadedAt).length;
      t.diagnostic(
        `${records.length} queries sent, ${records.length - lost} answered (${fromA} by A, ${fromB} by B), ${lost} lost, ${failed} failed; ${afterReload.length} sent after the reload was logged, upstream A got ${aAfterReload} of them`,
      );
      assert.equal(records.length, TOTAL, 'every query was sent within the time allowed');
      assert.equal(lost, 0, 'no query went unanswered');
      assert.equal(failed, 0, 'no query got SERVFAIL or another error');
      assert.equal(fromA + fromB, TOTAL, 'every answer came from A or B');
      assert.ok(fromA >= RELOAD_AFTER - CONCURRENCY, `A answered until the reload (${fromA})`);
      assert.ok(afterReload.length >= 500, `the stream went on after the reload (${afterReload.length})`);
      assert.ok(
        afterReload.every((r) => r.address === ADDRESS_B),
        'every query sent after the reload was answered by B',
      );
      assert.equal(aAfterReload, 0, 'upstream A got no query after the reload');

      // health and metrics name the new upstream only; the old one's sockets are closed
      const health = (await (await fetch(`${s.admin}/healthz`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
        upstreams: { upstream: string }[];
      };
      assert.deepEqual(
        health.upstreams.map((u) => u.upstream),
        [upstreamOf(b)],
      );
      const metrics = await (await fetch(`${s.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      assert.match(metrics, new RegExp(`divert_upstream_up\\{upstream="${upstreamOf(b)}"\\} 1`));
      assert.ok(!metrics.includes(`divert_upstream_up{upstream="${upstreamOf(a)}"}`), 'the old upstream is gone from divert_upstream_up');
      await until('divert closes its sockets to upstream A', 5000, () => socketsTo(a.port) === 0);
      assert.ok(socketsTo(b.port) > 0, 'and holds sockets to B');
    });

    test('queries in flight at the reload finish with the old upstream; new ones go to the new one; then the old sockets close', async (t) => {
      const defer = deferrer(t);
      const a = await fakeUpstream(ADDRESS_A, 600);
      const b = await fakeUpstream(ADDRESS_B);
      defer(() => a.close());
      defer(() => b.close());
      const s = await serve(t, workers, { listen: '127.0.0.1:0', upstream: [upstreamOf(a)] });

      const IN_FLIGHT = 40;
      const inFlight = Array.from({ length: IN_FLIGHT }, () => s.ask());
      await until('the queries reach upstream A', 3000, () => a.arrivals.length >= IN_FLIGHT);
      writeConfig(s.configPath, { listen: '127.0.0.1:0', upstream: [upstreamOf(b)] });
      const { line } = await s.hup();
      assert.match(line.msg, /^configuration reloaded/);
      const answered = await Promise.all(inFlight);
      assert.deepEqual(
        answered.filter((r) => r.rcode !== 'NOERROR'),
        [],
        'no query in flight failed',
      );
      assert.ok(
        answered.every((r) => r.addresses[0] === ADDRESS_A),
        'each was answered by A, where it was sent',
      );
      assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_B] });
      assert.equal(a.arrivals.length, IN_FLIGHT, 'A got nothing more');
      await until('divert closes its sockets to upstream A', 5000, () => socketsTo(a.port) === 0);
    });

    test('a bad new configuration is refused with one error line; the old one keeps serving', async (t) => {
      const { defer, a, b } = await twoUpstreams(t);
      const zones = join(mkdtempSync(join(tmpdir(), 'divert-reload-zones-')), 'zones');
      mkdirSync(zones);
      defer(() => rmSync(join(zones, '..'), { recursive: true, force: true }));
      writeFileSync(join(zones, 'a.zone'), '$ORIGIN reload.test.\n$TTL 60\none IN A 192.0.2.1\n');
      const good = { listen: '127.0.0.1:0', upstream: [upstreamOf(a)], zones: [zones] };
      const s = await serve(t, workers, good);
      const emptyResolvConf = join(s.dir, 'resolv.conf');
      writeFileSync(emptyResolvConf, '# no nameserver\nsearch example\n');

      const cases: [string, () => void, RegExp, () => void][] = [
        [
          'an invalid value',
          () => writeConfig(s.configPath, { ...good, upstream: [upstreamOf(b)], allow: ['10.0.0.0/33'] }),
          /--allow "10\.0\.0\.0\/33"/,
          () => {},
        ],
        [
          'an unknown option',
          () => writeConfig(s.configPath, { ...good, upstream: [upstreamOf(b)], 'up-stream': 'x' }),
          /unknown option "up-stream"/,
          () => {},
        ],
        ['a file that is not YAML', () => writeFileSync(s.configPath, 'upstream: [127.0.0.1\n'), /not valid JSON or YAML/, () => {}],
        [
          'an unreadable config file',
          () => renameSync(s.configPath, `${s.configPath}.away`),
          /--config ".*divert\.yaml": cannot read it \(ENOENT\)/,
          () => renameSync(`${s.configPath}.away`, s.configPath),
        ],
        [
          'a bad zone file',
          () => {
            writeConfig(s.configPath, { ...good, upstream: [upstreamOf(b)] });
            writeFileSync(join(zones, 'b.zone'), '$ORIGIN reload.test.\n$TTL 60\ntwo IN A 192.0.2.300\n');
          },
          /b\.zone.*3/,
          () => rmSync(join(zones, 'b.zone')),
        ],
        [
          'upstreams that come to none',
          () => writeConfig(s.configPath, { listen: '127.0.0.1:0', zones: [zones], 'resolv-conf': emptyResolvConf }),
          /no upstream resolver/,
          () => {},
        ],
      ];
      for (const [what, breakIt, expected, repair] of cases) {
        breakIt();
        const arrivals = a.arrivals.length;
        const { line, since } = await s.hup();
        const errors = s.since(since).filter((l) => l.level >= 50);
        t.diagnostic(`${what}: ${line.msg}`);
        assert.equal(errors.length, 1, `${what}: one error line (${errors.map((l) => l.msg).join(' | ')})`);
        assert.match(errors[0].msg, /^reload refused; still serving with the previous configuration: /, what);
        assert.match(errors[0].msg, expected, what);
        assert.equal(s.proc.child.exitCode, null, `${what}: still running`);
        assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_A] }, `${what}: still forwarding to A`);
        assert.equal(a.arrivals.length, arrivals + 1);
        assert.deepEqual(
          await s.ask('one.reload.test'),
          { rcode: 'NOERROR', addresses: ['192.0.2.1'] },
          `${what}: still answering its names`,
        );
        assert.deepEqual(await s.ask('two.reload.test'), { rcode: 'NOERROR', addresses: [ADDRESS_A] }, `${what}: nothing seeded`);
        repair();
        writeConfig(s.configPath, good);
      }
      assert.equal(b.queries.length, 0, 'B was never asked');

      // mended: the next reload applies
      writeConfig(s.configPath, { ...good, upstream: [upstreamOf(b)] });
      const { line } = await s.hup();
      assert.match(line.msg, /^configuration reloaded: upstreams/);
      assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_B] });
    });

    test('new zone names are seeded (held names are left as they are), the allow list and the log level change', async (t) => {
      const defer = deferrer(t);
      const a = await fakeUpstream(ADDRESS_A);
      defer(() => a.close());
      const zones = mkdtempSync(join(tmpdir(), 'divert-reload-zones-'));
      defer(() => rmSync(zones, { recursive: true, force: true }));
      writeFileSync(join(zones, 'a.zone'), '$ORIGIN reload.test.\n$TTL 60\none IN A 192.0.2.1\n');
      const base = { listen: '127.0.0.1:0', upstream: [upstreamOf(a)], zones: [zones] };
      const s = await serve(t, workers, base);
      assert.deepEqual(
        await s.ask('two.reload.test'),
        { rcode: 'NOERROR', addresses: [ADDRESS_A] },
        'not a name of the table yet: forwarded',
      );

      // zone files: a new name, and a held name's address changed in its file
      writeFileSync(join(zones, 'a.zone'), '$ORIGIN reload.test.\n$TTL 60\none IN A 192.0.2.9\n');
      writeFileSync(join(zones, 'b.zone'), '$ORIGIN reload.test.\n$TTL 60\ntwo IN A 192.0.2.2\n');
      let { line } = await s.hup();
      assert.match(line.msg, /1 new name seeded from zone files \(1 already held, left as they are\)/);
      assert.deepEqual(await s.ask('two.reload.test'), { rcode: 'NOERROR', addresses: ['192.0.2.2'] });
      assert.deepEqual(
        await s.ask('one.reload.test'),
        { rcode: 'NOERROR', addresses: ['192.0.2.1'] },
        'a name the table holds is not overwritten',
      );

      // the allow list: a network without 127.0.0.1, then back
      writeConfig(s.configPath, { ...base, allow: ['10.0.0.0/8'] });
      ({ line } = await s.hup());
      assert.match(line.msg, /allow list 9 → 1 networks \(10\.0\.0\.0\/8\)/);
      assert.equal((await s.ask()).rcode, RCODE_REFUSED);
      assert.equal((await s.ask('two.reload.test')).rcode, RCODE_REFUSED);
      writeConfig(s.configPath, { ...base, allow: ['127.0.0.1/32'] });
      await s.hup();
      assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_A] });

      // the log level: no debug line until the reload to debug, then the primary's and every worker's
      assert.equal(s.logs().filter((l) => l.level <= 20).length, 0, 'no debug line at info');
      writeConfig(s.configPath, { ...base, allow: ['127.0.0.1/32'], 'log-level': 'debug' });
      let since: number;
      ({ line, since } = await s.hup());
      assert.match(line.msg, /log level info → debug/);
      await until('debug lines', 3000, () => s.since(since).filter((l) => l.level === 20).length >= 1 + (workers > 1 ? workers : 0));
      const debug = s.since(since).filter((l) => l.level === 20);
      assert.ok(
        debug.some((l) => l.msg.startsWith('reload: the options a reload can change')),
        'the primary writes debug lines',
      );
      if (workers > 1) {
        const fromWorkers = new Set(debug.filter((l) => l.msg === 'worker applied the reloaded configuration').map((l) => l.worker));
        assert.equal(fromWorkers.size, workers, 'every worker writes debug lines');
      }
      // and back to warn: the summary of that reload is still written, later info lines are not
      writeConfig(s.configPath, { ...base, allow: ['127.0.0.1/32'], 'log-level': 'warn' });
      ({ line } = await s.hup());
      assert.match(line.msg, /log level debug → warn/);
      // a reload whose only trace at warn is its warning (an option that needs a restart)
      writeConfig(s.configPath, { ...base, allow: ['127.0.0.1/32'], 'log-level': 'warn', 'cache-names': 500 });
      since = s.logs().length;
      s.proc.child.kill('SIGHUP');
      await until('the warning of that reload', 5000, () => s.since(since).some((l) => l.level === 40));
      assert.deepEqual(
        s
          .since(since)
          .filter((l) => l.level < 40)
          .map((l) => l.msg),
        [],
        'nothing below warn is written any more',
      );
      assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_A] });
    });

    test('an option that needs a restart is named in a warning, kept, and the rest is applied', async (t) => {
      const { a, b } = await twoUpstreams(t);
      const s = await serve(t, workers, { listen: '127.0.0.1:0', upstream: [upstreamOf(a)] });
      writeConfig(s.configPath, { listen: '127.0.0.1:1053', upstream: [upstreamOf(b)], 'cache-names': 500, 'tcp-max-connections': 10 });
      const { line, since } = await s.hup();
      const warnings = s.since(since).filter((l) => l.level === 40);
      assert.equal(warnings.length, 1, warnings.map((l) => l.msg).join(' | '));
      assert.equal(
        warnings[0].msg,
        'reload: --listen 127.0.0.1:1053 needs a restart; kept 127.0.0.1:0; --tcp-max-connections 10 needs a restart; kept 1000; --cache-names 500 needs a restart; kept 100000',
      );
      assert.match(line.msg, new RegExp(`^configuration reloaded: upstreams ${upstreamOf(a)} → ${upstreamOf(b)}$`));
      assert.deepEqual(await s.ask(), { rcode: 'NOERROR', addresses: [ADDRESS_B] }, 'the new upstream applies, on the port it had');
    });
  });
}

describe('RunningServer.reload(), called directly', () => {
  /** Upstreams A and B, a config file naming A, and divert started in this process from it. */
  async function inProcessSetup(t: TestContext, logLevel: string, workers: string) {
    const { defer, a, b } = await twoUpstreams(t);
    const dir = mkdtempSync(join(tmpdir(), 'divert-reload-'));
    defer(() => rmSync(dir, { recursive: true, force: true }));
    const configPath = join(dir, 'divert.yaml');
    writeConfig(configPath, { upstream: [upstreamOf(a)] });
    const flags = {
      listen: ['127.0.0.1:0'],
      admin: '127.0.0.1:0',
      'admin-token': TOKEN,
      'log-level': logLevel,
      workers,
      config: configPath,
      // as startDivert adds it: the reload must read the same flags as the start
      ...(TEST_UDP_BATCH === undefined ? {} : { 'udp-batch': TEST_UDP_BATCH }),
    };
    const lines: string[] = [];
    const divert = await startDivert(flags, {
      reloadConfig: () => loadServeConfig(flags, {}),
      logStream: { write: (l) => void lines.push(l) },
    });
    defer(() => divert.close());
    return { a, b, configPath, divert, lines };
  }

  test('reloads asked for during a reload are served by one more run, and the result says what changed', async (t) => {
    const { a, b, configPath, divert, lines } = await inProcessSetup(t, 'info', '1');

    writeConfig(configPath, { upstream: [upstreamOf(b)], 'rate-limit': 1000 });
    const [first, second, third] = await Promise.all([divert.reload(), divert.reload(), divert.reload()]);
    assert.ok(first.ok && second.ok && third.ok);
    assert.deepEqual(first.changed, [`upstreams ${upstreamOf(a)} → ${upstreamOf(b)}`, '--rate-limit 0 → 1000']);
    assert.deepEqual(first.restartNeeded, []);
    assert.deepEqual(first.unconfirmed, []);
    assert.equal(second, third, 'the two asked for meanwhile share one run');
    assert.deepEqual(second.changed, []);
    assert.equal(logLines(lines.join('')).filter((l) => l.msg.startsWith('configuration reloaded')).length, 2);
    assert.deepEqual(
      decode(await udpAsk(divert.port, query(NAME))).answers!.map((x) => (x as { data: string }).data),
      [ADDRESS_B],
    );
  });

  test('a worker started after a reload (a replacement after a crash) starts with the reloaded configuration', async (t) => {
    const { a, b, configPath, divert } = await inProcessSetup(t, 'silent', '2');

    writeConfig(configPath, { upstream: [upstreamOf(b)] });
    const result = await divert.reload();
    assert.ok(result.ok);
    assert.deepEqual(result.unconfirmed, []);
    const reloadedAt = Date.now();
    const before = divert.debug.pids();
    process.kill(before[0], 'SIGKILL');
    let probes: (Buffer | null)[] = [];
    await until('the crashed worker is replaced and serving', 10_000, async () => {
      const now = divert.debug.pids();
      if (now.length !== 2 || now.includes(before[0])) return false;
      probes = await probeReplies(divert, query(NAME));
      return probes.length === 2 && probes.every((p) => p !== null);
    });
    // every worker, the new one too, forwards to B
    for (const reply of probes)
      assert.deepEqual(
        decode(reply).answers!.map((x) => (x as { data: string }).data),
        [ADDRESS_B],
      );
    const replies = await Promise.all(Array.from({ length: 200 }, () => udpAsk(divert.port, query(NAME), 2000)));
    for (const reply of replies)
      assert.deepEqual(
        decode(reply).answers!.map((x) => (x as { data: string }).data),
        [ADDRESS_B],
      );
    assert.equal(a.arrivals.filter((at) => at > reloadedAt).length, 0, 'A got nothing after the reload');
  });
});
