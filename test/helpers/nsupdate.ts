// nsupdate (bind9-dnsutils) as an operator runs it against divert's DNS UPDATE port, key
// files as tsig-keygen writes them, and what an update did as the admin API shows it.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Entry, HistoryRecord } from '../../src/entry/entry.js';
import type { TestServer } from './divert.js';
import { execChild, spawnChild } from './children.js';

const NSUPDATE = '/usr/bin/nsupdate';

export function keyText(name: string, secret: string): string {
  return `key "${name}" {\n\talgorithm hmac-sha256;\n\tsecret "${secret}";\n};\n`;
}

function onPath(command: string): Promise<boolean> {
  return execChild('sh', ['-c', `command -v ${command}`]).then(
    () => true,
    () => false,
  );
}

/**
 * A key as `tsig-keygen` writes it (by tsig-keygen itself when it is installed): `client`
 * holds the key alone, as nsupdate -k reads it; `path`, divert's --update-key-file, the
 * key and `policy` (update-policy rules, as divert reads them and nsupdate does not).
 */
export async function makeKeyFile(
  name: string,
  policy: string,
  writeTemp: (text: string) => string,
): Promise<{ path: string; client: string; secret: string }> {
  let text: string;
  if (await onPath('tsig-keygen')) {
    text = (await execChild('tsig-keygen', ['-a', 'hmac-sha256', name])).stdout;
  } else {
    text = keyText(name, randomBytes(32).toString('base64'));
  }
  return { path: writeTemp(`${text}${policy}`), client: writeTemp(text), secret: /secret "([^"]+)"/.exec(text)![1] };
}

export interface NsupdateRun {
  code: number | null;
  output: string;
}

/** Runs nsupdate with `commands` (then `send`); its output is stdout and stderr together. */
export function nsupdate(commands: string[], args: string[] = []): Promise<NsupdateRun> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(NSUPDATE, ['-t', '10', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c) => (output += c));
    child.stderr!.on('data', (c) => (output += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin!.end([...commands, 'send', ''].join('\n'));
  });
}

export function assertApplied(run: NsupdateRun): void {
  assert.equal(run.code, 0, `nsupdate failed: ${run.output}`);
}

/** The entry of `name` as GET /v1/names/{name} gives it; null when it is not intercepted. */
export async function entryOf(divert: TestServer, name: string): Promise<Entry | null> {
  const response = await divert.api(`/v1/names/${name}`);
  if (response.status === 404) return null;
  assert.equal(response.status, 200);
  return (await response.json()) as Entry;
}

export async function historyOf(divert: TestServer, name: string): Promise<HistoryRecord[]> {
  return ((await (await divert.api(`/v1/names/${name}/history`)).json()) as { history: HistoryRecord[] }).history;
}
