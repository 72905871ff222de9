// Human output of the CLI: entries and history records as aligned text tables (--json prints the server's JSON instead).

import type { Entry, EntryState, HistoryRecord } from '../table/table.js';

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
  return textTable(
    ['NAME', 'A', 'AAAA', 'TTL', 'VERSION', 'UPDATED'],
    entries.map((e) => [e.name, addresses(e.a), addresses(e.aaaa), String(e.ttl), String(e.version), time(e.updatedAt)]),
  );
}

/** One side of a change: its addresses and TTL, or "(none)" when the name was not intercepted. */
function state(s: EntryState): string {
  if (s === null) return '(none)';
  const all = [...s.a, ...s.aaaa];
  return `${all.length === 0 ? 'no addresses' : all.join(',')} ttl ${s.ttl}`;
}

export function historyTable(records: HistoryRecord[]): string {
  return textTable(
    ['VERSION', 'AT', 'OP', 'BY', 'OLD → NEW'],
    records.map((r) => [String(r.version), time(r.at), r.op, r.by, `${state(r.old)} → ${state(r.new)}`]),
  );
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Remarks (an empty result, what was done) go to stderr, so that stdout holds only the data a script would read. */
export function note(message: string): void {
  process.stderr.write(`divert: ${message}\n`);
}
