// Load sharing: one address family's answer, fixed records or a weighted draw of the
// first address, each variant encoded once per entry change.

import type { Sharing } from '../entry/entry.js';
import { encodeRecords } from '../wire/answers.js';

/** One address family's answer: fixed records, or a weighted draw of the first address. */
export interface Family {
  /** Records when every query gets the same ones (no sharing, or one candidate). */
  fixed: Buffer | null;
  count: number;
  /** Records in descending weight order: the answer when a single one is wanted. */
  ordered: Buffer;
  /** Per candidate (an address of positive weight): its records, it first. */
  variants: Buffer[];
  /** Running sums of the candidates' weights. */
  cumulative: Float64Array;
  total: number;
}

export function compileFamily(type: number, ttl: number, addresses: readonly string[], sharing: Sharing | null): Family {
  if (!sharing || addresses.length <= 1) {
    const records = encodeRecords(type, ttl, addresses);
    return { fixed: records, count: addresses.length, ordered: records, variants: [], cumulative: new Float64Array(0), total: 0 };
  }
  // an address without a weight weighs 1 (see Sharing in table.ts); all at 0: all equal
  const weights: number[] = addresses.map((address) => sharing.weights?.[address] ?? 1);
  if (!weights.some((w) => w > 0)) weights.fill(1);
  const count = Math.min(sharing.pick ?? addresses.length, addresses.length);
  // stable sort: equal weights keep their list order
  const byWeight = addresses.map((_, i) => i).sort((x, y) => weights[y] - weights[x]);
  const encode = (order: number[]) =>
    encodeRecords(
      type,
      ttl,
      order.map((i) => addresses[i]),
    );
  const candidates = byWeight.filter((i) => weights[i] > 0);
  // each variant: `first`, then the heaviest others up to `count`; built in `count` steps, not
  // in the length of the list, so pick 1 over many addresses costs what it keeps
  const variantOf = (first: number): number[] => {
    const order = [first];
    for (let k = 0; k < byWeight.length && order.length < count; k++) if (byWeight[k] !== first) order.push(byWeight[k]);
    return order;
  };
  const variants = candidates.map((first) => encode(variantOf(first)));
  const cumulative = new Float64Array(candidates.length);
  let total = 0;
  candidates.forEach((i, k) => {
    total += weights[i];
    cumulative[k] = total;
  });
  const ordered = encode(byWeight.slice(0, count));
  const fixed = candidates.length === 1 ? variants[0] : null;
  return { fixed, count, ordered, variants, cumulative, total };
}

export function sharingOf(s: Sharing): Sharing | null {
  return s.weights || s.pick !== undefined ? { weights: s.weights, pick: s.pick } : null;
}
