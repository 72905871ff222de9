// Every process the bench starts is kept here and stopped by its PID: SIGTERM, then
// SIGKILL when it has not exited within its grace period.

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export class Processes {
  /** Also handed to timeToDivert, which pushes the processes it starts. */
  readonly list: ChildProcess[] = [];

  track<T extends ChildProcess>(child: T): T {
    this.list.push(child);
    return child;
  }

  async stop(child: ChildProcess, graceMs = 5000): Promise<void> {
    const pid = child.pid;
    if (pid === undefined || exited(child)) return;
    const gone = once(child, 'exit').catch(() => undefined);
    signal(pid, 'SIGTERM');
    if ((await Promise.race([gone.then(() => 'exited'), sleep(graceMs)])) === 'exited' || exited(child)) return;
    process.stderr.write(`bench: pid ${pid} ignored SIGTERM for ${graceMs} ms; sending SIGKILL\n`);
    signal(pid, 'SIGKILL');
    await Promise.race([gone, sleep(2000)]);
  }

  async stopAll(graceMs = 5000): Promise<void> {
    await Promise.all(this.list.map((child) => this.stop(child, graceMs)));
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Runs a bench's main function; every tracked process is stopped by its PID when it ends,
 * throws (the stack on stderr, exit status 1), or on SIGINT / SIGTERM (130 / 143).
 */
export async function runBench(processes: Processes, main: () => Promise<void>, graceMs = 5000): Promise<void> {
  let interrupted = false;
  for (const [name, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(name, () => {
      interrupted = true;
      process.stderr.write(`bench: ${name}: stopping ${processes.list.length} started processes\n`);
      void processes.stopAll(graceMs).finally(() => process.exit(code));
    });
  }
  try {
    await main();
  } catch (err) {
    if (!interrupted) process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await processes.stopAll(graceMs);
  }
}
