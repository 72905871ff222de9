// Entries written as a zone file, for `divert names export` and the like.

import type { EntryData } from '../../entry/entry.js';
import { isAbsoluteName } from '../../wire/name.js';
import { DIVERT_COMMENT } from './lexer.js';

/** A master file that parseZone reads back to the same entries. */
export function formatZone(entries: Iterable<EntryData & { name: string }>): string {
  const sorted = [...entries].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const lines: string[] = [];
  for (const entry of sorted) {
    const owner = isAbsoluteName(entry.name) ? entry.name : `${entry.name}.`;
    for (const address of entry.a) lines.push(`${owner} ${entry.ttl} IN A ${address}`);
    for (const address of entry.aaaa) lines.push(`${owner} ${entry.ttl} IN AAAA ${address}`);
    // A master file has no way to say "this name, no addresses": the ;divert line carries its TTL.
    const extra: Record<string, unknown> = {};
    if (entry.a.length === 0 && entry.aaaa.length === 0) extra.ttl = entry.ttl;
    if (entry.weights) extra.weights = entry.weights;
    if (entry.pick !== undefined) extra.pick = entry.pick;
    if (entry.rules) extra.rules = entry.rules;
    if (Object.keys(extra).length > 0) lines.push(`${DIVERT_COMMENT}${owner} ${JSON.stringify(extra)}`);
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
