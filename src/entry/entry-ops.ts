// What a change does to an entry's data: a diversion (one address replaced by another in
// the entry's own lists, every rule's and the weights), and new addresses with the rest
// kept. Shared by both stores, DNS UPDATE, the CLI and the monitor, so they cannot drift apart.

import { isIPv4, isIPv6 } from 'node:net';
import { DivertError } from '../errors.js';
import type { EntryData, EntryState, Rule } from './entry.js';
import { MAX_WEIGHT } from './check-rules.js';
import { canonicalIPv6 } from './addresses.js';

export interface Diversion {
  /** The address list that holds them. */
  field: 'a' | 'aaaa';
  from: string;
  to: string;
}

/** An address of either family in the table's canonical form, with its family's field; BAD_ADDRESS naming `which` otherwise. */
export function checkAddress(which: 'from' | 'to', value: unknown): { field: 'a' | 'aaaa'; address: string } {
  if (typeof value === 'string' && isIPv4(value)) return { field: 'a', address: value };
  if (typeof value === 'string' && isIPv6(value) && !value.includes('%')) {
    // the same canonical form the table stores, so the text comparison finds it
    return { field: 'aaaa', address: canonicalIPv6(value) };
  }
  throw new DivertError('BAD_ADDRESS', `${which}: "${String(value)}" is not an IPv4 or IPv6 address`);
}

export function checkDiversion(from: unknown, to: unknown): Diversion {
  const f = checkAddress('from', from);
  const t = checkAddress('to', to);
  if (f.field !== t.field) {
    const family = (field: 'a' | 'aaaa') => (field === 'a' ? 'IPv4' : 'IPv6');
    throw new DivertError(
      'BAD_ADDRESS',
      `to: "${String(to)}" is ${family(t.field)} but from: "${String(from)}" is ${family(f.field)}; both must be of one family`,
    );
  }
  if (f.address === t.address) {
    throw new DivertError('BAD_ADDRESS', `to: "${String(to)}" is the same address as from: "${String(from)}"`);
  }
  return { field: f.field, from: f.address, to: t.address };
}

/**
 * The list with `from` replaced by `to` where it stood, or just removed when `to` is
 * already listed; null when `from` is not in it. The Lua divert script does the same.
 */
export function divertList(list: readonly string[], from: string, to: string): string[] | null {
  if (!list.includes(from)) return null;
  const hasTo = list.includes(to);
  const out: string[] = [];
  for (const address of list) {
    if (address !== from) out.push(address);
    else if (!hasTo) out.push(to);
  }
  return out;
}

/** The answerable part of an entry (no name, version or time); optional fields only when set. */
export function dataOf(entry: EntryData): EntryData {
  const data: EntryData = { a: entry.a, aaaa: entry.aaaa, ttl: entry.ttl };
  if (entry.weights !== undefined) data.weights = entry.weights;
  if (entry.pick !== undefined) data.pick = entry.pick;
  if (entry.rules !== undefined) data.rules = entry.rules;
  return data;
}

export function stateOf(data: EntryData | null | undefined): EntryState {
  return data ? Object.freeze(dataOf(data)) : null;
}

/**
 * Weights with `from`'s weight moved to `to`: renamed, or added to `to`'s own (an address
 * without a weight weighs 1) when `to` is listed already, so the share `from` had goes to
 * `to` and the weights stay valid. Unchanged when `from` has no weight.
 */
function divertWeights(weights: Record<string, number>, from: string, to: string, hasTo: boolean): Record<string, number> {
  if (!(from in weights)) return weights;
  const out: Record<string, number> = {};
  for (const [address, weight] of Object.entries(weights)) {
    if (address !== from) out[address] = weight;
    else if (!hasTo) out[to] = weight;
  }
  if (hasTo) out[to] = Math.min(MAX_WEIGHT, (weights[to] ?? 1) + weights[from]);
  return out;
}

/**
 * The entry's data with `from` replaced by `to` in its own addresses and in every rule's,
 * and its weight following it (a rule without its own list weighs the entry's addresses);
 * null when it answers `from` nowhere. The Lua divert script does the same.
 */
export function divertData(data: EntryData, field: 'a' | 'aaaa', from: string, to: string): EntryData | null {
  const own = data[field];
  const ownList = divertList(own, from, to);
  if (ownList === null && !data.rules?.some((rule) => rule[field]?.includes(from))) return null;
  const out = dataOf(data);
  if (ownList !== null) out[field] = ownList;
  if (data.weights) out.weights = divertWeights(data.weights, from, to, own.includes(to));
  if (data.rules) {
    out.rules = data.rules.map((rule) => {
      const list = rule[field];
      const diverted = list ? divertList(list, from, to) : null;
      // a rule's weights name its own addresses, or the entry's when it lists none of this family
      const weighed = list ?? own;
      if (diverted === null && !(rule.weights && from in rule.weights && weighed.includes(from))) return rule;
      const next: Rule = { ...rule };
      if (diverted !== null) next[field] = diverted;
      if (rule.weights && weighed.includes(from)) next.weights = divertWeights(rule.weights, from, to, weighed.includes(to));
      return next;
    });
  }
  return out;
}

/** Weights of the addresses still listed; undefined when none is left. */
function keptWeights(weights: Record<string, number> | undefined, listed: readonly string[]): Record<string, number> | undefined {
  if (!weights) return undefined;
  const kept = Object.entries(weights).filter(([address]) => listed.includes(address));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

/**
 * The entry answering `a` and `aaaa` instead of its own addresses, with what a change of
 * addresses does not say kept: its TTL, pick, rules, and the weights of the addresses
 * still listed. A rule that weighs the entry's addresses (for a family it lists none of
 * its own) loses the weights of those gone, and a rule left with neither a condition nor
 * weights goes, as the table would refuse it. `divert names set` and DNS UPDATE write this.
 */
export function withAddresses(current: EntryData, a: string[], aaaa: string[]): EntryData {
  const data: EntryData = { a, aaaa, ttl: current.ttl };
  const weights = keptWeights(current.weights, [...a, ...aaaa]);
  if (weights) data.weights = weights;
  if (current.pick !== undefined) data.pick = current.pick;
  const rules = current.rules?.flatMap((rule) => {
    if (!rule.weights) return [rule];
    const next: Rule = { ...rule };
    const ruleWeights = keptWeights(rule.weights, [...(rule.a ?? a), ...(rule.aaaa ?? aaaa)]);
    if (ruleWeights) next.weights = ruleWeights;
    else delete next.weights;
    return next.networks || next.days || next.from || next.weights ? [next] : [];
  });
  if (rules && rules.length > 0) data.rules = rules;
  return data;
}
