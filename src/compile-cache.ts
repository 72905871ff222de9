// V8's compile cache for divert's modules and its dependencies, so that each `divert …`
// call does not compile the same code again (npm run bench:cli shows what it saves). It is
// kept per user ($XDG_CACHE_HOME/divert or ~/.cache/divert), not in Node's default folder
// under the shared tmpdir: a divert run as root must not load compiled code that another
// user could have put there. NODE_COMPILE_CACHE, when set, wins; NODE_DISABLE_COMPILE_CACHE=1
// turns it off. A cache that cannot be used (no home, a read-only disk) is skipped silently:
// it only saves time.

import { mkdirSync } from 'node:fs';
// the default export, not a named one: Node before 22.1 has no enableCompileCache, and a
// named import would fail to link before runtime-check.ts could say which Node is needed
import module from 'node:module';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

export function useCompileCache(env: NodeJS.ProcessEnv = process.env): void {
  // Node has already opened the one named there, or been told to use none
  if (env.NODE_COMPILE_CACHE || env.NODE_DISABLE_COMPILE_CACHE) return;
  try {
    const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
    if (!isAbsolute(base)) return;
    const folder = join(base, 'divert', 'compile-cache');
    // One level at a time, and never Node's own recursive mkdir (which enableCompileCache
    // uses for a missing folder): that spins forever where a parent exists but cannot
    // hold the child, as under a dangling link or in /proc.
    for (const level of [base, join(base, 'divert'), folder]) {
      try {
        mkdirSync(level, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return;
      }
    }
    module.enableCompileCache(folder);
  } catch {
    // no home folder to put it in: run without it
  }
}
