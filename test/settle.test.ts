// A write while a worker is stalled (SIGSTOP), with a real `divert serve --workers 2`: the
// write is stored, but not acknowledged as answered everywhere. The admin API says 202
// with X-Divert-Unconfirmed naming the worker (and the CLI warns), DNS UPDATE gets
// SERVFAIL instead of NOERROR; once the worker runs again it answers with every change
// it missed, and the next write is a plain 200.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query, udpAsk } from './helpers/divert.js';
import { makeKeyFile, nsupdate } from './helpers/nsupdate.js';
import { runDivert, workersOf } from './helpers/process.js';

const TOKEN = 'settle-token-0123456789abcdef';
const NAME = 'www.settle.test';
const KEY = 'settle';

/** The A addresses a query for NAME gets over UDP now (null: no reply in time). */
async function addresses(dnsPort: number): Promise<string[] | null> {
  const reply = await udpAsk(dnsPort, query(NAME), 3000);
  if (reply === null) return null;
  return (decode(reply).answers ?? []).map((a) => (a as { data: string }).data).sort();
}

/** Polls until `check` holds; fails naming `what` after `timeoutMs`. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Whether `pid` is still a divert worker (not a process that took its number since). */
function isWorker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cluster/worker.js');
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

test('a stalled worker: the admin write is 202 naming it, the CLI warns, DNS UPDATE is SERVFAIL; it catches up on SIGCONT, then writes are 200 again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'divert-settle-'));
  const write = (file: string, text: string) => {
    writeFileSync(join(dir, file), text, { mode: 0o600 });
    return join(dir, file);
  };
  let files = 0;
  const key = await makeKeyFile(KEY, `update-policy {\n\tgrant ${KEY} subdomain settle.test.;\n};\n`, (text) =>
    write(`key-${files++}`, text),
  );
  write('settle.zone', `$ORIGIN settle.test.\n$TTL 60\nwww IN A 192.0.2.1\n`);
  const serve = runDivert([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--admin',
    '127.0.0.1:0',
    '--admin-token',
    TOKEN,
    '--upstream',
    '127.0.0.1:9',
    '--zones',
    join(dir, 'settle.zone'),
    '--workers',
    '2',
    '--update-listen',
    '127.0.0.1:0',
    '--update-key-file',
    key.path,
  ]);
  const stopped = new Set<number>();
  let workers = new Map<number, number>();
  try {
    const line = await serve.listeningLine(20_000);
    const admin = `http://${line.admin}`;
    const dnsPort = Number(/:(\d+)$/.exec(line.listen[0])![1]);
    const updatePort = Number(/:(\d+)$/.exec(line.update!)![1]);
    const put = (a: string[]) =>
      fetch(`${admin}/v1/names/${NAME}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ a }),
        signal: AbortSignal.timeout(10_000),
      });
    const stop = (pid: number) => {
      stopped.add(pid);
      signal(pid, 'SIGSTOP');
    };
    const resume = (pid: number) => {
      signal(pid, 'SIGCONT');
      stopped.delete(pid);
    };

    await until('both workers serving', 20_000, async () => (workers = workersOf(serve.child.pid!)).size === 2);
    assert.deepEqual(await addresses(dnsPort), ['192.0.2.1']);
    const [stalledSlot, otherSlot] = [2, 1];
    const stalled = workers.get(stalledSlot)!;
    const other = workers.get(otherSlot)!;
    stop(stalled);

    // the admin API: stored, 202, the stalled worker named; the other worker answers with it
    const started = Date.now();
    const stalledPut = await put(['192.0.2.20']);
    t.diagnostic(`PUT with worker ${stalledSlot} stalled answered ${stalledPut.status} after ${Date.now() - started} ms`);
    assert.equal(stalledPut.status, 202);
    assert.equal(stalledPut.headers.get('x-divert-unconfirmed'), String(stalledSlot));
    assert.deepEqual(((await stalledPut.json()) as { a: string[] }).a, ['192.0.2.20'], 'the reply is the stored entry');
    assert.deepEqual(await addresses(dnsPort), ['192.0.2.20'], 'the worker that runs answers with the change');
    assert.match(serve.stdout(), new RegExp(`"unconfirmed":\\[${stalledSlot}\\].*did not confirm in time`));

    // the CLI: the write succeeded (exit 0), and stderr says which worker has not confirmed it
    const cli = runDivert(['names', 'set', NAME, '192.0.2.30', '--admin', admin, '--token', TOKEN]);
    assert.equal(await cli.exited(30_000), 0, cli.stderr());
    assert.match(
      cli.stderr(),
      new RegExp(
        `^divert: warning: the change is stored, but worker ${stalledSlot} of divert serve did not confirm in time that it answers with it \\(HTTP 202\\)`,
        'm',
      ),
    );
    assert.match(cli.stdout(), /192\.0\.2\.30/);

    // DNS UPDATE: written, but SERVFAIL rather than NOERROR as if every worker answered with it
    const update = await nsupdate(
      [`server 127.0.0.1 ${updatePort}`, 'zone settle.test.', `update delete ${NAME}. A`, `update add ${NAME}. 60 A 192.0.2.40`],
      ['-k', key.client],
    );
    assert.notEqual(update.code, 0, `nsupdate reports the failure: ${update.output}`);
    assert.match(update.output, /update failed: SERVFAIL/);
    assert.deepEqual(await addresses(dnsPort), ['192.0.2.40'], 'it is written: the worker that runs answers with it');
    assert.match(
      serve.stdout(),
      new RegExp(`"unconfirmed":\\[${stalledSlot}\\].*DNS UPDATE written, but worker ${stalledSlot} did not confirm in time`),
    );

    // the stalled worker runs again and catches up: with the other one stopped, it alone answers
    resume(stalled);
    stop(other);
    await until(
      `worker ${stalledSlot} answers with the last change`,
      10_000,
      async () => JSON.stringify(await addresses(dnsPort)) === JSON.stringify(['192.0.2.40']),
    );
    resume(other);

    // every worker confirms again: a plain 200, no header
    const after = await put(['192.0.2.50']);
    assert.equal(after.status, 200);
    assert.equal(after.headers.get('x-divert-unconfirmed'), null);
    assert.deepEqual(await addresses(dnsPort), ['192.0.2.50']);
  } finally {
    for (const pid of stopped) signal(pid, 'SIGCONT');
    await serve.stop();
    // a worker that outlived its primary (it should not) is not left behind
    for (const pid of workers.values()) if (isWorker(pid)) signal(pid, 'SIGKILL');
  }
});
