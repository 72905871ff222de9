// Human output of the CLI: entries and history records as aligned text tables (--json prints the server's JSON instead).

import type { Entry, EntryState, HistoryRecord, Rule, Sharing } from '../entry/entry.js';
import type { DiversionRecord } from '../entry/diversions.js';

/** Columns padded to their widest cell and two spaces apart; the last column is not padded, so lines carry no trailing blanks. */
export function textTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [headers, ...rows].map(line).join('\n') + '\n';
}

/** An empty list is shown as "-", so that every column has a cell and the table stays readable. */
function addresses(list: string[]): string {
  return list.length === 0 ? '-' : list.join(',');
}

/** ISO time to the second: the milliseconds only widen the column. */
function time(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

export function entriesTable(entries: Entry[]): string {
  // the RULES column only when some entry has rules or weights, so plain tables stay as they were
  const extra = entries.some((e) => e.rules || e.weights || e.pick !== undefined);
  const more = (e: Entry) =>
    extra ? [[e.rules ? String(e.rules.length) : '-', e.weights || e.pick !== undefined ? 'weighted' : ''].join(' ').trim()] : [];
  // BY: who made the last change ("-" for an entry stored before the table kept it)
  return textTable(
    ['NAME', 'A', 'AAAA', 'TTL', 'VERSION', 'UPDATED', 'BY', ...(extra ? ['RULES'] : [])],
    entries.map((e) => [
      e.name,
      addresses(e.a),
      addresses(e.aaaa),
      String(e.ttl),
      String(e.version),
      time(e.updatedAt),
      e.updatedBy ?? '-',
      ...more(e),
    ]),
  );
}

function sharing(s: Sharing): string {
  const parts: string[] = [];
  if (s.weights)
    parts.push(
      `weights ${Object.entries(s.weights)
        .map(([address, w]) => `${address}=${w}`)
        .join(',')}`,
    );
  if (s.pick !== undefined) parts.push(`pick ${s.pick}`);
  return parts.join(' ');
}

/** A rule on one line: its conditions, then what it answers. */
export function ruleText(rule: Rule): string {
  const when: string[] = [];
  if (rule.networks) when.push(`from ${rule.networks.join(',')}`);
  if (rule.days) when.push(rule.days.join(','));
  if (rule.from !== undefined) when.push(`${rule.from}-${rule.to}`);
  if ((rule.days || rule.from !== undefined) && rule.tz) when.push(rule.tz);
  const answer: string[] = [];
  if (rule.a) answer.push(`A ${addresses(rule.a)}`);
  if (rule.aaaa) answer.push(`AAAA ${addresses(rule.aaaa)}`);
  const shared = sharing(rule);
  if (shared) answer.push(shared);
  return `${when.length > 0 ? when.join(' ') : 'always'} → ${answer.length > 0 ? answer.join(' ') : 'the default addresses'}`;
}

/** The lines below an entry's table row that show its load sharing and rules (empty when it has none). */
export function rulesText(entry: Entry): string {
  const lines: string[] = [];
  const shared = sharing(entry);
  if (shared) lines.push(`default answer: ${shared}`);
  (entry.rules ?? []).forEach((rule, i) => lines.push(`rule ${i + 1}: ${ruleText(rule)}`));
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/** One side of a change: its addresses and TTL, or "(none)" when the name was not intercepted. */
function state(s: EntryState): string {
  if (s === null) return '(none)';
  const all = [...s.a, ...s.aaaa];
  const extra = [sharing(s), s.rules ? `${s.rules.length} rule${s.rules.length === 1 ? '' : 's'}` : ''].filter(Boolean);
  return `${all.length === 0 ? 'no addresses' : all.join(',')} ttl ${s.ttl}${extra.length > 0 ? ` ${extra.join(' ')}` : ''}`;
}

export function historyTable(records: HistoryRecord[]): string {
  return textTable(
    ['VERSION', 'AT', 'OP', 'BY', 'OLD → NEW'],
    records.map((r) => [String(r.version), time(r.at), r.op, r.by, `${state(r.old)} → ${state(r.new)}`]),
  );
}

export function diversionsTable(records: DiversionRecord[]): string {
  return textTable(
    ['FROM', 'TO', 'BY', 'AT'],
    records.map((r) => [r.from, r.to, r.by, time(r.at)]),
  );
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Remarks (an empty result, what was done) go to stderr, so that stdout holds only the data a script would read. */
export function note(message: string): void {
  process.stderr.write(`divert: ${message}\n`);
}
