// Files a test file writes (zone files, key files, config files) in a folder of its own,
// removed when the test file ends.

import { after } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A writer of new files under a fresh folder: each call returns the path of a new file holding `text`. */
export function tempFiles(label: string, defaultSuffix = '.conf'): (text: string, suffix?: string) => string {
  const dir = mkdtempSync(join(tmpdir(), `divert-${label}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  return (text, suffix = defaultSuffix) => {
    const path = join(dir, `file-${++files}${suffix}`);
    writeFileSync(path, text);
    return path;
  };
}
