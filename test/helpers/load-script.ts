// A load generator as a child process (an ES module given as text), so it competes with
// the server for CPU as a real client would, not with the test's own event loop. Bounded:
// killed after `maxMs`; resolves with what it printed.

import { spawnChild } from './children.js';

export function runLoadScript(script: string, args: (string | number)[], maxMs: number): Promise<string> {
  const child = spawnChild(process.execPath, ['--input-type=module', '-e', script, ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), maxMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`load script exited with ${code}`));
    });
  });
}
