// Zone files and folders of them read from disk, merged into one entry per name.

import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DivertError } from '../../errors.js';
import type { EntryData } from '../../entry/entry.js';
import type { WritePolicy } from '../write-policy.js';
import { MergedEntries } from './merge.js';
import { parseZone } from './parse.js';

function cannotRead(path: string, err: unknown): never {
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
  };
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = reasons[code] ?? (err instanceof Error ? err.message : String(err));
  throw new DivertError('BAD_ZONE', `${path}: cannot read zone file: ${reason}`, { cause: err });
}

/** The files `path` names: itself, or the `*.zone` files directly in it, by name. */
async function zoneFiles(path: string): Promise<string[]> {
  let isFolder: boolean;
  try {
    isFolder = (await stat(path)).isDirectory();
  } catch (err) {
    return cannotRead(path, err);
  }
  if (!isFolder) return [path];
  let found: Dirent[];
  try {
    found = await readdir(path, { withFileTypes: true });
  } catch (err) {
    return cannotRead(path, err);
  }
  const names = found
    .filter((e) => e.name.endsWith('.zone') && !e.isDirectory())
    .map((e) => e.name)
    .sort();
  if (names.length === 0) throw new DivertError('BAD_ZONE', `${path}: the folder holds no *.zone file`);
  return names.map((name) => join(path, name));
}

/**
 * Reads zone files and folders of them; a name in several files gets one merged entry.
 * With a write policy, each name of each file (as merged so far) must pass it: a refusal
 * is BAD_ZONE naming the file and the name.
 */
export async function readZones(paths: string[], policy?: Pick<WritePolicy, 'checkEntry'>): Promise<Map<string, EntryData>> {
  const merged = new MergedEntries();
  for (const path of paths) {
    for (const file of await zoneFiles(path)) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        return cannotRead(file, err);
      }
      for (const [name, data] of parseZone(text, file)) {
        merged.addEntry(name, data);
        try {
          policy?.checkEntry(name, merged.entries.get(name)!);
        } catch (err) {
          if (err instanceof DivertError) throw new DivertError('BAD_ZONE', `${file}: ${err.message}`, { cause: err });
          throw err;
        }
      }
    }
  }
  return merged.entries;
}
