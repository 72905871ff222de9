// Every process a test (or a bench a test runs) starts goes through here, so that none
// outlives the process that started it, however that process ends. A test file's process
// that is cancelled (the test runner kills it with a signal, or the runner is killed)
// never runs its after() hooks, and a `divert serve` or redis-server it started used to
// stay behind.
//
// On Linux each child is started under `setpriv --pdeathsig KILL --` (util-linux): the
// kernel sends the child SIGKILL when the thread that spawned it ends. Node spawns on its
// main thread, which ends only with the process, so the child dies with the test process
// however it dies. Processes still running when the test process exits are also killed
// on the way out (all there is where setpriv is missing). And a process that loads this
// module exits when its own parent dies, so a killed test runner takes the test files'
// processes, and so their children, with it. test/reaping.test.ts proves both.

import {
  execFile,
  execFileSync,
  spawn,
  type ChildProcess,
  type ExecFileOptions,
  type ExecFileSyncOptions,
  type SpawnOptions,
} from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';

/** setpriv's path, or null where there is none (not Linux, or util-linux missing). */
const SETPRIV = process.platform === 'linux' ? onPath('setpriv') : null;

const execFileAsync = promisify(execFile);
const running = new Set<ChildProcess>();

process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

// A test file's process is itself the child of the test runner. When the runner dies (a
// cancelled run killed with SIGKILL), nothing tells the file's process, which would go
// on with its tests and their servers: it exits once it has been handed to another
// parent, and its children go with it.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 250).unref();

function onPath(command: string): string | null {
  const candidates =
    isAbsolute(command) || command.includes('/')
      ? [command]
      : (process.env.PATH ?? '')
          .split(delimiter)
          .filter(Boolean)
          .map((dir) => join(dir, command));
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * The command line that runs `command args` so that it dies with this process. A command
 * that is not on PATH is left as it is, so spawn fails with ENOENT as it would without
 * setpriv (setpriv would exit 127 instead).
 */
function bound(command: string, args: readonly string[]): [string, string[]] {
  if (SETPRIV === null || onPath(command) === null) return [command, [...args]];
  return [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]];
}

function track<T extends ChildProcess>(child: T): T {
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.once('error', () => running.delete(child));
  return child;
}

/** child_process.spawn, for a child that dies with this process. Its pid is the command's own (setpriv execs it). */
export function spawnChild(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, argv] = bound(command, args);
  return track(spawn(file, argv, options));
}

/**
 * util.promisify(child_process.execFile), for a child that dies with this process: resolves
 * with its output when it exits with 0, rejects with execFile's error (code, signal,
 * stdout, stderr) otherwise.
 */
export function execChild(
  command: string,
  args: readonly string[],
  options: ExecFileOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  const [file, argv] = bound(command, args);
  const run = execFileAsync(file, argv, { ...options, encoding: 'utf8' });
  track(run.child);
  return run;
}

/** child_process.execFileSync, for a child that dies with this process (bench scripts wait on dnsperf so). */
export function execChildSync(command: string, args: readonly string[], options: ExecFileSyncOptions = {}): string {
  const [file, argv] = bound(command, args);
  return execFileSync(file, argv, { ...options, encoding: 'utf8' });
}
