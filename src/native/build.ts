// Compiles the addons of --udp-batch, src/native/udp-batch.c (client listeners) and
// udp-connected.c (upstream sockets), and divert proxy's TCP relay, tcp-relay.c, into
// dist/native/*.node (npm run build runs it after tsc), with the machine's cc against the
// headers of the Node that runs this. The addons are optional: without cc or the headers
// (a slim image without gcc has no cc) it says so in one line and the build still
// succeeds; --udp-batch then falls back to node:dgram and divert proxy to node:net, each
// with a warning. test/udp-batch.test.ts compiles a variant through compileAddon.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// dist/src/native/build.js -> the repository's top folder
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Each addon, and what runs without it. */
const ADDONS: Record<string, string> = {
  'udp-batch': '--udp-batch will fall back to node:dgram',
  'udp-connected': '--udp-batch will fall back to node:dgram',
  'tcp-relay': 'divert proxy will relay TCP through node:net',
};
const HEADERS = join(dirname(process.execPath), '..', 'include', 'node');

/** Compiles src/native/<addon>.c into `output`, with `flags` for cc besides the usual; what went wrong, or null. */
export function compileAddon(
  addon: string,
  output = join(ROOT, 'dist', 'native', `${addon}.node`),
  flags: readonly string[] = [],
): string | null {
  const source = join(ROOT, 'src', 'native', `${addon}.c`);
  if (!existsSync(join(HEADERS, 'node_api.h'))) return `no Node headers in ${HEADERS}`;
  mkdirSync(dirname(output), { recursive: true });
  // undefined symbols are the running node's (napi_*, uv_*): resolved when it loads the addon
  const cc = spawnSync('cc', ['-O2', '-shared', '-fPIC', '-Wall', `-I${HEADERS}`, ...flags, '-o', output, source], { encoding: 'utf8' });
  if (cc.error) return `cc not found (${(cc.error as NodeJS.ErrnoException).code})`;
  if (cc.status !== 0) return `cc failed: ${cc.stderr.trim().split('\n')[0]}`;
  return null;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const [addon, fallback] of Object.entries(ADDONS)) {
    const problem = compileAddon(addon);
    if (problem) console.log(`${addon} addon not built (${problem}): ${fallback}`);
  }
}
