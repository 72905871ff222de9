// Workers that crash again and again (a packet of death, say) with a real `divert serve
// --workers 2` and SIGKILL from here: DNS is answered again within seconds, not after a
// back-off of 30 s; /healthz says which workers are restarting while it lasts; a worker
// that stayed up is forgiven its slot's crashes; each crash is logged once.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query, startDivert, udpAsk } from './helpers/divert.js';
import { childrenOf, runDivert, type DivertProcess } from './helpers/process.js';
import { sumOf } from './helpers/metrics.js';
import { replyTo, startUpstream } from './helpers/upstream.js';

const TOKEN = 'worker-restarts-token-0123456789abcdef';
const NAME = 'www.crash.test';

interface WorkersHealth {
  configured: number;
  running: number;
  restarting: { worker: number; crashes: number; state: string; nextStartInMs?: number }[];
}
interface HealthBody {
  ok: boolean;
  workers: WorkersHealth;
  problems: string[];
}

interface Serve {
  process: DivertProcess;
  admin: string;
  dnsPort: number;
}

/** `divert serve --workers 2` answering NAME from its zone file; stopped when the test ends. */
async function serve(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<Serve> {
  const upstream = await startUpstream((q) => replyTo(q));
  const dir = mkdtempSync(join(tmpdir(), 'divert-restarts-'));
  writeFileSync(join(dir, 'crash.zone'), `$ORIGIN crash.test.\n$TTL 60\nwww IN A 192.0.2.7\n`);
  const process = runDivert(
    [
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
      '--admin-token',
      TOKEN,
      '--upstream',
      `127.0.0.1:${upstream.port}`,
      '--zones',
      dir,
      '--workers',
      '2',
    ],
    { env },
  );
  t.after(async () => {
    await process.stop();
    await upstream.close();
  });
  const line = await process.listeningLine(20_000); // slow only on a machine under load
  return { process, admin: `http://${line.admin}`, dnsPort: Number(/:(\d+)$/.exec(line.listen[0])![1]) };
}

async function health(s: Serve): Promise<{ status: number; body: HealthBody }> {
  const response = await fetch(`${s.admin}/healthz`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5000) });
  return { status: response.status, body: (await response.json()) as HealthBody };
}

async function metrics(s: Serve): Promise<string> {
  return (await fetch(`${s.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5000) })).text();
}

/** Whether NAME gets its address over UDP now. */
async function answered(s: Serve): Promise<boolean> {
  const reply = await udpAsk(s.dnsPort, query(NAME), 500);
  return reply !== null && decode(reply).answers?.some((a) => (a as { data: string }).data === '192.0.2.7') === true;
}

/** SIGKILLs each of `pids`; how many it reached. */
function kill(pids: number[]): number {
  let reached = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      reached++;
    } catch {
      // gone already
    }
  }
  return reached;
}

/** Polls until `check` holds; fails naming `what` after `timeoutMs`. Returns the time it took. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (
      await Promise.resolve()
        .then(check)
        .catch(() => false)
    )
      return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** The primary's log lines about a worker that exited (crashed, or failed to start). */
function exits(s: Serve): { worker: number; crashes: number; restartInMs: number }[] {
  return s.process
    .stdout()
    .split('\n')
    .filter((l) => /"msg":"(worker exited|new worker failed)/.test(l))
    .map((l) => JSON.parse(l) as { worker: number; crashes: number; restartInMs: number });
}

test('seven crashes of the workers 0.7 s apart: DNS is answered again within seconds, and /healthz says so while it lasts', async (t) => {
  const s = await serve(t);
  const primary = s.process.child.pid!;
  assert.equal(childrenOf(primary).length, 2);
  assert.ok(await answered(s));

  const seen: { status: number; body: HealthBody }[] = [];
  let killed = 0;
  for (let round = 0; round < 7; round++) {
    const began = Date.now();
    killed += kill(childrenOf(primary));
    for (const at of [200, 450]) {
      await sleep(Math.max(0, at - (Date.now() - began)));
      seen.push(await health(s));
    }
    await sleep(Math.max(0, 700 - (Date.now() - began)));
  }
  // at most 1 s until a start while none runs, and a start takes 1-2 s on a busy machine (the old back-off: 30 s)
  const back = await until('DNS answered after the last crash', 15_000, () => answered(s));
  t.diagnostic(`${killed} workers killed in 7 rounds; DNS answered again ${back} ms after the last round`);

  // while no worker ran, /healthz said so (503) and named the slots being restarted
  const down = seen.find((h) => h.body.workers.running === 0);
  assert.ok(down, `some /healthz reading had no worker running: ${JSON.stringify(seen.map((h) => h.body.workers))}`);
  assert.equal(down.status, 503);
  assert.equal(down.body.ok, false);
  assert.equal(down.body.workers.configured, 2);
  assert.ok(down.body.workers.restarting.length > 0 && down.body.workers.restarting.every((r) => r.crashes >= 1));
  assert.ok(
    down.body.problems.some((p) => /^workers restarting: worker \d after \d+ crash(es)? in a row .*; no worker is running/.test(p)),
    down.body.problems.join('; '),
  );
  // whenever every slot was down, one of them was starting or due within a second, whatever its back-off
  const allDown = seen.filter((h) => h.body.workers.restarting.length === 2);
  assert.ok(allDown.length > 0);
  for (const h of allDown) {
    const soonest = Math.min(...h.body.workers.restarting.map((r) => (r.state === 'starting' ? 0 : r.nextStartInMs!)));
    assert.ok(soonest <= 1000, `no start within 1 s while no worker ran: ${JSON.stringify(h.body.workers)}`);
  }

  await until('/healthz ok again', 10_000, async () => (await health(s)).body.ok);
  const now = await health(s);
  assert.equal(now.status, 200);
  assert.ok(now.body.workers.running >= 1);
  // every crash is logged once, with the back-off it put in force, and none was more than 30 s
  const logged = exits(s);
  assert.equal(logged.length, killed, s.process.stdout());
  assert.ok(logged.every((l) => l.restartInMs >= 500 && l.restartInMs <= 30_000));
  const text = await metrics(s);
  assert.ok(sumOf(text, 'divert_worker_restarts_total') >= 1);
  assert.ok(sumOf(text, 'divert_workers') >= 1);

  // the slot still backed off comes back in time: all is as before the crashes
  await until('both workers back', 40_000, async () => {
    const h = await health(s);
    return h.body.workers.running === 2 && h.body.problems.length === 0;
  });
  assert.equal(sumOf(await metrics(s), 'divert_workers'), 2);
});

test('a worker that stayed up is forgiven its crashes: its next crash is restarted after the short delay again; the slots back off apart', async (t) => {
  const STABLE_MS = 3000;
  const s = await serve(t, { DIVERT_TEST_WORKER_STABLE_MS: String(STABLE_MS) });
  const primary = s.process.child.pid!;
  const running = async () => (await health(s)).body.workers.running === 2;
  const pair = childrenOf(primary);
  let victim = pair[0];
  const other = pair[1];

  // three crashes in a row of one slot, each as soon as its new worker serves
  for (let crash = 1; crash <= 3; crash++) {
    const before = childrenOf(primary);
    assert.equal(kill([victim]), 1);
    await until(
      `worker replaced after crash ${crash}`,
      20_000,
      async () => (await running()) && childrenOf(primary).some((p) => !before.includes(p)),
    );
    victim = childrenOf(primary).find((p) => !before.includes(p))!;
  }
  const slot = exits(s)[0].worker;
  assert.deepEqual(
    exits(s).map((l) => [l.worker, l.crashes, l.restartInMs]),
    [
      [slot, 1, 500],
      [slot, 2, 1000],
      [slot, 3, 2000],
    ],
  );

  // the other slot has a back-off of its own: its first crash waits the short delay
  assert.equal(kill([other]), 1);
  await until('the other worker replaced', 20_000, async () => exits(s).length === 4 && (await running()));
  assert.deepEqual(
    exits(s)
      .slice(3)
      .map((l) => [l.worker, l.crashes, l.restartInMs]),
    [[3 - slot, 1, 500]],
  );

  // the victim's slot has served long enough: its next crash counts as the first
  await sleep(STABLE_MS + 500);
  assert.equal(kill([victim]), 1);
  // it waits 0.5 s, then starts: /healthz names it meanwhile
  let restarting: WorkersHealth['restarting'][number] | undefined;
  await until('/healthz names the slot restarting', 10_000, async () => {
    restarting = (await health(s)).body.workers.restarting.find((r) => r.worker === slot);
    return restarting !== undefined;
  });
  assert.equal(restarting!.crashes, 1);
  assert.ok(restarting!.state === 'starting' || restarting!.nextStartInMs! <= 500, JSON.stringify(restarting));
  await until('the crash logged', 5000, () => exits(s).length === 5);
  assert.deepEqual(
    exits(s)
      .slice(4)
      .map((l) => [l.worker, l.crashes, l.restartInMs]),
    [[slot, 1, 500]],
  );
  await until('the victim replaced again', 20_000, running);
  assert.equal(sumOf(await metrics(s), 'divert_worker_restarts_total', { worker: String(slot) }), 4);
});

test('--workers 1 answers in this process: nothing to restart, /healthz and /metrics say one running', async () => {
  const divert = await startDivert({ upstream: ['127.0.0.1:9'], workers: '1' });
  try {
    assert.deepEqual(divert.debug.pids(), [process.pid]);
    const response = await divert.api('/healthz');
    const body = (await response.json()) as HealthBody;
    assert.equal(response.status, 200);
    assert.deepEqual(body.workers, { configured: 1, running: 1, restarting: [] });
    assert.deepEqual(body.problems, []);
    const text = await (await divert.api('/metrics')).text();
    assert.equal(sumOf(text, 'divert_workers'), 1);
    assert.equal(sumOf(text, 'divert_worker_restarts_total'), 0);
  } finally {
    await divert.close();
  }
});
