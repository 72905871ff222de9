// Load sharing and local rules as the table accepts them: checked once when written, so
// compile.ts and the query path never meet a bad value. Every refusal is BAD_RULE and
// names the field ("rules[2].networks[0]") and the value.

import { isIPv4, isIPv6 } from 'node:net';
import { DivertError, showValue } from '../errors.js';
import { networkOf, parseCidr } from '../net/cidr.js';
import { DAYS, type Day, type EntryData, type Rule, type Sharing } from './entry.js';
import { canonicalIPv6, checkAddresses } from './addresses.js';

export const MAX_RULES = 64;
export const MAX_NETWORKS_PER_RULE = 256;
export const MAX_WEIGHT = 1000;
export const MAX_PICK = 64;

const RULE_KEYS = ['networks', 'days', 'from', 'to', 'tz', 'a', 'aaaa', 'weights', 'pick'] as const;
const CLOCK = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;

function fail(path: string, message: string): never {
  throw new DivertError('BAD_RULE', `${path}: ${message}`);
}

/** A bad value as a message quotes it (JSON, cut short; any shape, however deep). */
const show = showValue;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A field given as null is taken as not given. */
function given<T>(value: T | null | undefined): value is T {
  return value !== undefined && value !== null;
}

/** Minutes since local midnight of "HH:MM" ("24:00" is 1440, the end of the day). */
export function minutesOf(clock: string): number {
  if (clock === '24:00') return 1440;
  return Number(clock.slice(0, 2)) * 60 + Number(clock.slice(3, 5));
}

/** One network in canonical CIDR text; a bare address is a network of one. */
export function checkNetwork(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, `${show(value)} is not a network string in CIDR form (e.g. 10.1.0.0/16)`);
  let range: ReturnType<typeof parseCidr>;
  try {
    range = parseCidr(value);
  } catch {
    fail(path, `${show(value)} is not a network in CIDR form (e.g. 10.1.0.0/16 or 2001:db8::/32)`);
  }
  const [net, bits] = range;
  const network = `${networkOf(net, bits).toString()}/${bits}`;
  if (network !== `${net.toString()}/${bits}`) fail(path, `${show(value)} has host bits set; did you mean ${network}?`);
  return network;
}

function checkNetworks(value: unknown, path: string): string[] | undefined {
  if (!Array.isArray(value)) fail(path, 'expected a list of networks in CIDR form');
  if (value.length > MAX_NETWORKS_PER_RULE) fail(path, `${value.length} networks; the limit is ${MAX_NETWORKS_PER_RULE} per rule`);
  const seen = new Set<string>();
  const out = value.map((item, i) => {
    const network = checkNetwork(item, `${path}[${i}]`);
    if (seen.has(network)) fail(`${path}[${i}]`, `${show(item)} is listed twice`);
    seen.add(network);
    return network;
  });
  return out.length > 0 ? out : undefined;
}

function checkDays(value: unknown, path: string): Day[] | undefined {
  if (!Array.isArray(value)) fail(path, `expected a list of days (${DAYS.join(', ')})`);
  const seen = new Set<Day>();
  value.forEach((item: unknown, i) => {
    const day = typeof item === 'string' ? item.toLowerCase() : item;
    if (!DAYS.includes(day as Day)) fail(`${path}[${i}]`, `${show(item)} is not a day; expected one of ${DAYS.join(', ')}`);
    if (seen.has(day as Day)) fail(`${path}[${i}]`, `${show(item)} is listed twice`);
    seen.add(day as Day);
  });
  // week order, so equal rules read back equal
  return seen.size > 0 ? DAYS.filter((d) => seen.has(d)) : undefined;
}

function checkClock(value: unknown, path: string, endOfDay: boolean): string {
  if (typeof value === 'string' && (CLOCK.test(value) || (endOfDay && value === '24:00'))) return value;
  fail(path, `${show(value)} is not a time "HH:MM" from 00:00 to ${endOfDay ? '24:00' : '23:59'}`);
}

function checkTz(value: unknown, path: string): string {
  if (typeof value !== 'string' || value === '') fail(path, `${show(value)} is not an IANA time zone (e.g. Europe/London)`);
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: value });
  } catch {
    fail(path, `${show(value)} is not an IANA time zone (e.g. Europe/London)`);
  }
  return value;
}

function checkPick(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_PICK) {
    fail(path, `${show(value)} is not a whole number from 1 to ${MAX_PICK}`);
  }
  return value;
}

/**
 * Weights keyed by canonical address, in the order of the answer's lists. Keys must be
 * addresses of `a`/`aaaa`. A family that weighs 0 in all is shared equally (all standby:
 * none is preferred), so a monitor or a diversion can never write a weighting that fails.
 */
function checkWeights(value: unknown, path: string, a: string[], aaaa: string[]): Record<string, number> | undefined {
  if (!isObject(value)) fail(path, 'expected an object mapping addresses to whole numbers');
  const byAddress = new Map<string, number>();
  // Sets, made when first needed: weights for each of many addresses cost what they list
  const listed: { a?: Set<string>; aaaa?: Set<string> } = {};
  for (const [key, weight] of Object.entries(value)) {
    const at = `${path}[${showValue(key)}]`;
    let address: string;
    let list: string[];
    let family: 'a' | 'aaaa';
    if (isIPv4(key)) {
      [address, list, family] = [key, a, 'a'];
    } else if (isIPv6(key) && !key.includes('%')) {
      [address, list, family] = [canonicalIPv6(key), aaaa, 'aaaa'];
    } else {
      fail(at, `${show(key)} is not an address`);
    }
    if (!(listed[family] ??= new Set(list)).has(address)) {
      fail(at, `${show(key)} is not one of the answer's ${family} addresses (${listOf(list)})`);
    }
    if (byAddress.has(address)) fail(at, `${show(key)} is weighted twice`);
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
      fail(at, `${show(weight)} is not a whole number from 0 to ${MAX_WEIGHT}`);
    }
    byAddress.set(address, weight);
  }
  if (byAddress.size === 0) return undefined;
  const out: Record<string, number> = {};
  for (const address of [...a, ...aaaa]) {
    const weight = byAddress.get(address);
    if (weight !== undefined) out[address] = weight;
  }
  return out;
}

/** Addresses for a message: a long list is cut short, so the message stays a line. */
function listOf(addresses: string[], shown = 10): string {
  if (addresses.length === 0) return 'none';
  const more = addresses.length - shown;
  return more > 0 ? `${addresses.slice(0, shown).join(', ')} and ${more} more` : addresses.join(', ');
}

/** `weights` and `pick` of an answer whose addresses are `a` and `aaaa`. */
function checkSharing(input: { weights?: unknown; pick?: unknown }, prefix: string, a: string[], aaaa: string[]): Sharing {
  const out: Sharing = {};
  if (given(input.weights)) {
    const weights = checkWeights(input.weights, `${prefix}weights`, a, aaaa);
    if (weights) out.weights = weights;
  }
  if (given(input.pick)) out.pick = checkPick(input.pick, `${prefix}pick`);
  return out;
}

function checkRule(value: unknown, path: string, entry: EntryData): Rule {
  if (!isObject(value)) fail(path, 'expected an object with conditions (networks, days, from/to) and an answer');
  for (const key of Object.keys(value)) {
    if (!(RULE_KEYS as readonly string[]).includes(key)) fail(path, `unknown key "${key}" (expected ${RULE_KEYS.join(', ')})`);
  }
  const rule: Rule = {};
  if (given(value.networks)) {
    const networks = checkNetworks(value.networks, `${path}.networks`);
    if (networks) rule.networks = networks;
  }
  if (given(value.days)) {
    const days = checkDays(value.days, `${path}.days`);
    if (days) rule.days = days;
  }
  if (given(value.from) !== given(value.to)) {
    fail(path, `"from" and "to" come together; only "${given(value.from) ? 'from' : 'to'}" is given`);
  }
  if (given(value.from) && given(value.to)) {
    rule.from = checkClock(value.from, `${path}.from`, false);
    rule.to = checkClock(value.to, `${path}.to`, true);
    if (rule.from === rule.to) fail(`${path}.to`, `the window ${rule.from}–${rule.to} is empty; "from" and "to" must differ`);
  }
  if (given(value.tz)) {
    if (!rule.days && !rule.from) fail(`${path}.tz`, 'a time zone needs "days" or "from"/"to" to apply to');
    rule.tz = checkTz(value.tz, `${path}.tz`);
  }
  if (given(value.a)) rule.a = checkAddresses('a', value.a, `${path}.a`, 'BAD_RULE');
  if (given(value.aaaa)) rule.aaaa = checkAddresses('aaaa', value.aaaa, `${path}.aaaa`, 'BAD_RULE');
  const sharing = checkSharing(value, `${path}.`, rule.a ?? entry.a, rule.aaaa ?? entry.aaaa);
  Object.assign(rule, sharing);
  if (!rule.networks && !rule.days && !rule.from && !rule.weights) {
    fail(
      path,
      'has no condition (networks, days or from/to) and no weights, so it would always answer; ' + 'give the entry these addresses instead',
    );
  }
  return rule;
}

/**
 * `entry` (its a/aaaa/ttl already checked) with the input's load sharing and rules checked
 * and added. Empty `weights` and `rules` are dropped, so the entry reads back as plain.
 */
export function checkLocalRules(entry: EntryData, input: { weights?: unknown; pick?: unknown; rules?: unknown }): EntryData {
  const out: EntryData = { ...entry, ...checkSharing(input, '', entry.a, entry.aaaa) };
  if (given(input.rules)) {
    const rules = input.rules;
    if (!Array.isArray(rules)) fail('rules', 'expected a list of rules');
    if (rules.length > MAX_RULES) fail('rules', `${rules.length} rules; the limit is ${MAX_RULES}`);
    if (rules.length > 0) out.rules = rules.map((rule, i) => checkRule(rule, `rules[${i}]`, entry));
  }
  return out;
}
