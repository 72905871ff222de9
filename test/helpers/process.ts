// Runs the built `divert` binary as a child process, as an operator would.

import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnChild } from './children.js';
import { tempDir } from './temp-files.js';

/** The repository root (tests run from dist/test/). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The built binary next to this build of the tests (dist/, or a helper's own outDir). */
export const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');

const COMPILE_CACHE = join(tmpdir(), 'divert-test-compile-cache');

/** The "listening" log line of `divert serve`: where it listens, as HOST:PORT texts. */
export interface ListeningLine {
  listen: string[];
  admin: string;
  upstreams: string[];
  /** The DNS UPDATE port, when --update-listen is on. */
  update?: string;
  /** The DoT and DoH listeners, when there are any. */
  dot?: string[];
  doh?: string[];
}

export interface DivertProcess {
  child: ChildProcess;
  /** The environment the process runs with; its XDG_CONFIG_HOME holds the token file serve generates. */
  env: NodeJS.ProcessEnv;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first listening port once the "listening" log line appears. */
  listening(timeoutMs?: number): Promise<number>;
  /** Resolves with the whole "listening" log line (DNS and admin addresses) once it appears. */
  listeningLine(timeoutMs?: number): Promise<ListeningLine>;
  /** Resolves with the exit code once the process ends. */
  exited(timeoutMs?: number): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * Starts `divert ARGS`. `serve` gets an admin port the OS picks and a token file in a
 * private temporary folder unless the test says otherwise, so tests never collide on
 * port 5380 or touch the user's own token.
 */
export function runDivert(args: string[], options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}): DivertProcess {
  const prefix = options.prefix ?? [];
  const serveDefaults = args[0] === 'serve' && !args.includes('--admin') ? ['--admin', '127.0.0.1:0'] : [];
  const [command, ...rest] = [...prefix, process.execPath, MAIN, ...args, ...serveDefaults];
  // the V8 compile cache (content-keyed, shared by every divert a test run starts) takes
  // about a quarter off the CPU each start costs: the suite starts divert hundreds of times
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? COMPILE_CACHE,
    // as TEST_UDP_BATCH in divert.ts (not imported: that module starts servers in this process)
    // and divert proxy's TCP goes through node:net instead of the native relay
    ...(process.env.DIVERT_TEST_UDP_BATCH === '0' ? { DIVERT_UDP_BATCH: 'false', DIVERT_PROXY_NATIVE_RELAY: 'false' } : {}),
    ...(process.env.DIVERT_TEST_UDP_BATCH === '1' ? { DIVERT_UDP_BATCH: 'true' } : {}),
    ...options.env,
  };
  env.XDG_CONFIG_HOME ??= tempDir('home');
  const child = spawnChild(command, rest, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const within = <T>(p: Promise<T>, ms: number, what: string) =>
    Promise.race([
      p,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`${what} not within ${ms} ms; stdout: ${out} stderr: ${err}`)), ms).unref(),
      ),
    ]);
  const listeningLine = (timeoutMs = 10_000) =>
    within(
      new Promise<ListeningLine>((resolve, reject) => {
        const check = () => {
          const line = out.split('\n').find((l) => l.includes('"listening on'));
          if (line) resolve(JSON.parse(line) as ListeningLine);
        };
        child.stdout!.on('data', check);
        void exit.then((code) => reject(new Error(`exited with ${code} before listening: ${err}`)));
        check();
      }),
      timeoutMs,
      'listening',
    );
  return {
    child,
    env,
    stdout: () => out,
    stderr: () => err,
    listening: async (timeoutMs = 10_000) => Number(/:(\d+)$/.exec((await listeningLine(timeoutMs)).listen[0])![1]),
    listeningLine,
    exited: (timeoutMs = 10_000) => within(exit, timeoutMs, 'exit'),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exit;
    },
  };
}

/** The live child processes of `pid` (the workers of a primary), from /proc. */
export function childrenOf(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) => {
    try {
      return readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return []; // the thread ended meanwhile
    }
  });
  return children.filter(isRunning);
}

/** Whether process `pid` runs: neither gone nor a zombie (which died already, waiting to be reaped). */
export function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The workers of a `divert serve --workers N` primary, by slot (1-based, as the admin API and the logs number them): from the environment the primary gave each. */
export function workersOf(primary: number): Map<number, number> {
  const bySlot = new Map<number, number>();
  for (const pid of childrenOf(primary)) {
    try {
      const slot = /(?:^|\0)DIVERT_WORKER=(\d+)(?:\0|$)/.exec(readFileSync(`/proc/${pid}/environ`, 'latin1'))?.[1];
      if (slot !== undefined) bySlot.set(Number(slot), pid);
    } catch {
      // it ended meanwhile
    }
  }
  return bySlot;
}
