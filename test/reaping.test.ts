// No process a test starts outlives it. A stand-in for a test file (a node process
// importing the same helpers) starts a redis-server and a `divert serve` with two workers
// using that Redis; it is then killed the way a cancelled run kills it, with no chance to
// stop anything, and every process it started must be gone within a few seconds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { processTree } from '../bench/netfuzz.js';
import { spawnChild } from './helpers/children.js';

const helper = (name: string) => new URL(`./helpers/${name}`, import.meta.url).href;

/** The stand-in test file: prints the PIDs it started as one JSON line, then waits. */
const VICTIM = `
import { runDivert } from ${JSON.stringify(helper('process.js'))};
import { startRedis } from ${JSON.stringify(helper('redis.js'))};
const redis = await startRedis();
const serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--workers', '2', '--redis', redis.url, '--redis-prefix', 'divert-test:reaping:']);
await serve.listeningLine(60_000);
console.log(JSON.stringify({ serve: serve.child.pid }));
setInterval(() => {}, 1000);
`;

/** Starts `script` (an ES module) as a node process of its own. */
function launch(script: string): ChildProcess {
  return spawnChild(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function firstLine(child: ChildProcess): Promise<string> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes('\n')) return out.slice(0, out.indexOf('\n'));
  }
  throw new Error(`exited with ${child.exitCode} before printing a line`);
}

/** The command line of a running process; null once it is gone (a zombie counts as gone: it runs nothing). */
function commandOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return null;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return null;
  }
}

/** Waits until none of `pids` runs; returns how long that took, or throws naming the ones left. */
async function gone(pids: number[], withinMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const left = pids.filter((pid) => commandOf(pid) !== null);
    if (left.length === 0) return Date.now() - started;
    if (Date.now() - started > withinMs)
      assert.fail(
        `still running ${withinMs} ms after their test process was killed: ${left.map((pid) => `${pid} ${commandOf(pid)}`).join('; ')}`,
      );
    await sleep(50);
  }
}

/** What the stand-in started: its whole process tree below it, which must hold redis-server, divert serve and its two workers. */
function started(victim: number, serve: number): number[] {
  const pids = processTree(victim).filter((pid) => pid !== victim);
  const commands = pids.map((pid) => commandOf(pid) ?? '');
  assert.ok(
    commands.some((c) => c.startsWith('redis-server')),
    `a redis-server among ${commands.join('; ')}`,
  );
  assert.ok(pids.includes(serve) && commandOf(serve)!.includes(' serve '), `divert serve among ${commands.join('; ')}`);
  assert.equal(commands.filter((c) => c.includes('cluster/worker.js')).length, 2, `two workers among ${commands.join('; ')}`);
  return pids;
}

test('a SIGKILLed test process takes redis-server, divert serve and its workers with it', async (t) => {
  const victim = launch(VICTIM);
  const { serve } = JSON.parse(await firstLine(victim)) as { serve: number };
  const pids = started(victim.pid!, serve);
  victim.kill('SIGKILL');
  t.diagnostic(`all gone ${await gone(pids, 5000)} ms after the kill`);
});

test('when the test runner is SIGKILLed, the test process exits and takes them with it', async (t) => {
  // a parent in between plays the runner: it starts the stand-in (plainly, as the runner
  // does) and prints its PID and the PID the stand-in printed
  const runner = launch(`
    import { spawn } from 'node:child_process';
    const child = spawn(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(VICTIM)}], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      if (out.endsWith('\\n')) console.log(JSON.stringify({ victim: child.pid, ...JSON.parse(out) }));
    });
    setInterval(() => {}, 1000);
  `);
  const { victim, serve } = JSON.parse(await firstLine(runner)) as { victim: number; serve: number };
  const pids = [victim, ...started(victim, serve)];
  runner.kill('SIGKILL');
  t.diagnostic(`all gone ${await gone(pids, 5000)} ms after the kill`);
});
