// Runs the built `divert` binary as a child process, as an operator would.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** The repository root (tests run from dist/test/). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const MAIN = join(ROOT, 'dist', 'src', 'main.js');

export interface DivertProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first listening port once the "listening" log line appears. */
  listening(timeoutMs?: number): Promise<number>;
  /** Resolves with the exit code once the process ends. */
  exited(timeoutMs?: number): Promise<number | null>;
  stop(): Promise<void>;
}

export function runDivert(args: string[], options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}): DivertProcess {
  const prefix = options.prefix ?? [];
  const [command, ...rest] = [...prefix, process.execPath, MAIN, ...args];
  const child = spawn(command, rest, { cwd: ROOT, env: { PATH: process.env.PATH, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const within = <T>(p: Promise<T>, ms: number, what: string) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms; stdout: ${out} stderr: ${err}`)), ms).unref())]);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    listening: (timeoutMs = 10_000) =>
      within(
        new Promise<number>((resolve, reject) => {
          const check = () => {
            const line = out.split('\n').find((l) => l.includes('"listening on'));
            if (line) resolve(Number(/:(\d+)$/.exec(JSON.parse(line).listen[0] as string)![1]));
          };
          child.stdout!.on('data', check);
          void exit.then((code) => reject(new Error(`exited with ${code} before listening: ${err}`)));
          check();
        }),
        timeoutMs,
        'listening',
      ),
    exited: (timeoutMs = 10_000) => within(exit, timeoutMs, 'exit'),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exit;
    },
  };
}
