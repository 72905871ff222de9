// The admin API's request bodies and headers, checked before anything is written: a bad
// one is refused with the name of the bad field, and changes nothing.

import { z } from 'zod';
import { DivertError } from '../errors.js';
import { checkEntryData } from '../entry/check.js';
import type { EntryData } from '../entry/entry.js';

// The shape only; checkEntryData (validate.ts) checks every value, rules included, and names the field.
const entryBody = z.strictObject({
  a: z.array(z.unknown()).optional(),
  aaaa: z.array(z.unknown()).optional(),
  ttl: z.unknown().optional(),
  weights: z.unknown().optional(),
  pick: z.unknown().optional(),
  rules: z.array(z.unknown()).optional(),
});

const diversionBody = z.strictObject({ from: z.string(), to: z.string() });

function fieldOf(path: PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), '');
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new DivertError('BAD_REQUEST', 'body: expected a JSON object');
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = fieldOf(issue.path);
  if (issue.code === 'unrecognized_keys') throw new DivertError('BAD_REQUEST', `${issue.keys[0]}: unknown field`);
  throw new DivertError('BAD_REQUEST', `${field || 'body'}: ${issue.message}`);
}

/**
 * `{"a": [...], "aaaa": [...], "ttl": 30, "weights": {...}, "pick": 1, "rules": [...]}`
 * (the last three optional). Both lists may be empty: the name is then
 * intercepted and answered with NODATA, which blocks it without leaking its address.
 */
export function entryFromBody(body: unknown): EntryData {
  return checkEntryData(parse(entryBody, body));
}

export function diversionFromBody(body: unknown): { from: string; to: string } {
  return parse(diversionBody, body);
}

/** `If-Match: 5` or `If-Match: "5"` (an ETag as the API sends it); 0 means "must not exist". */
export function ifMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  // an empty list (a header given with no value) is no version either, not a TypeError
  const text = (Array.isArray(header) ? (header[0] ?? '') : header)
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
  if (!/^\d{1,15}$/.test(text)) {
    throw new DivertError(
      'BAD_REQUEST',
      `If-Match: "${String(header)}" is not an entry version (a whole number, as in the entry's "version" or ETag)`,
    );
  }
  return Number(text);
}

export function limitOf(text: unknown): number {
  if (text === undefined) return 100;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new DivertError(
      'BAD_REQUEST',
      `limit: "${typeof text === 'string' ? text : JSON.stringify(text)}" is not a whole number from 1 to 1000`,
    );
  return n;
}
