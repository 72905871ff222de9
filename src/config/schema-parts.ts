// Pieces of the zod schemas of divert's YAML config files (the monitor's, the proxy's):
// durations, whole numbers, addresses, and the one-line error that names the field.

import { isIP } from 'node:net';
import { z } from 'zod';
import { DivertError } from '../errors.js';
import { parseHostPort, type HostPort } from '../net/host-port.js';

/** "500ms", "5s", "2m", "1h", or a number of seconds; returns milliseconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!match) return undefined;
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's'] ?? 1000;
  return Math.round(Number(match[1]) * scale);
}

export const duration = (min: number, max: number) =>
  z.unknown().transform((value, ctx) => {
    const ms = parseDuration(value);
    const shown = typeof value === 'string' ? `"${value}"` : String(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as "500ms", "5s", "2m" or a number of seconds (got ${shown})` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `expected a duration from ${min} ms to ${max / 1000} s (got ${shown})` });
      return z.NEVER;
    }
    return ms;
  });

export const whole = (min: number, max: number) =>
  z
    .number({ error: 'expected a whole number' })
    .int('expected a whole number')
    .min(min, `expected at least ${min}`)
    .max(max, `expected at most ${max}`);

export const fraction = z
  .number({ error: 'expected a number from 0 to 1' })
  .min(0, 'expected a number from 0 to 1')
  .max(1, 'expected a number from 0 to 1');

/** Canonical text, as the table stores it, so answer sets compare equal whatever the spelling. */
export function canonicalAddress(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

export const address = z.string({ error: 'expected an IPv4 or IPv6 address' }).transform((text, ctx) => {
  if (isIP(text) === 0 || text.includes('%')) {
    ctx.addIssue({ code: 'custom', message: `expected an IPv4 or IPv6 address (got "${text}")` });
    return z.NEVER;
  }
  return canonicalAddress(text);
});

export const hostPort = z.string({ error: 'expected HOST:PORT, such as 0.0.0.0:443 or [::]:443' }).transform((text, ctx): HostPort => {
  const parsed = parseHostPort(text);
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: 'custom', message: `"${text}": ${parsed}` });
    return z.NEVER;
  }
  return parsed;
});

function fieldOf(path: PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), '');
}

/** `data` checked against `schema`; the first problem stops start-up with one line naming the field. */
export function checked<S extends z.ZodType>(schema: S, data: unknown, source: string): z.output<S> {
  const result = schema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = fieldOf(issue.path);
  if (issue.code === 'unrecognized_keys') {
    throw new DivertError('BAD_CONFIG', `${source}: ${field ? field + '.' : ''}${issue.keys[0]}: unknown field`);
  }
  // zod says "Invalid input" for a missing field; say which field is missing.
  const message = issue.code === 'invalid_type' && issue.input === undefined ? 'required' : issue.message;
  throw new DivertError('BAD_CONFIG', `${source}: ${field || 'config'}: ${message}`);
}
