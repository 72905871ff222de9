// The tests of divert's native addons are skipped only on a machine without cc, where
// npm run build cannot make them: where cc is, a missing addon is a build that failed, and
// those tests run and fail with it.

import { spawnSync } from 'node:child_process';

/** node:test's `skip` for tests of `addon` (the loaded addon, or null). */
export function skipWithoutAddon(addon: unknown): false | string {
  if (addon) return false;
  const noCc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).error !== undefined;
  return noCc ? 'no cc here, so no addon (npm run build needs cc)' : false;
}
