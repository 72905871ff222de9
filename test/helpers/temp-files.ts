// Files a test file writes (zone files, key files, config files) in a folder of its own,
// removed when the test file ends; and folders removed when the test process exits.

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

const leftBehind: string[] = [];

/** A fresh folder under the system's temporary folder, removed when this process exits
 * (a test file's process): for folders that outlive a single test, or are made outside one. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `divert-${label}-`));
  if (leftBehind.push(dir) === 1) {
    process.on('exit', () => {
      for (const d of leftBehind) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}
