// What the query path counts for /metrics: queries by outcome, transport and type, how
// long each took by outcome, and the queries each intercepted name got. Per query it is
// a few increments into typed arrays (no labels hashed, nothing allocated); the arrays
// are copied out on a scrape, summed over the workers, and turned into Prometheus
// series by src/admin/metrics.ts.

import type { Transport } from '../transport/handler.js';
import { typeName } from '../wire/header.js';
import { OUTCOMES, type Outcome } from './outcome.js';

export const TRANSPORTS = ['udp', 'tcp', 'dot', 'doh'] as const satisfies readonly Transport[];
const TRANSPORT_INDEX: Record<Transport, number> = { udp: 0, tcp: 1, dot: 2, doh: 3 };

/** Query types with a series of their own; every other type counts as "other". */
const LABELLED_TYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 48, 64, 65, 257, 255];
export const TYPE_LABELS: readonly string[] = ['other', ...LABELLED_TYPES.map(typeName)];
const TYPE_INDEX = new Uint8Array(65536);
LABELLED_TYPES.forEach((code, i) => (TYPE_INDEX[code] = i + 1));

/** A query whose question could not be read (dropped, or FORMERR). */
export const NO_TYPE = -1;

/** Upper bounds (seconds) of the latency histogram's buckets; +Inf follows. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

const OUTCOME_INDEX = Object.fromEntries(OUTCOMES.map((o, i) => [o, i])) as Record<Outcome, number>;
const PER_OUTCOME = TRANSPORTS.length * TYPE_LABELS.length;
const BUCKETS = LATENCY_BUCKETS.length + 1;

/** Queries for names beyond --metrics-max-names. */
export const OTHER_NAMES = '_other';

/** One process's figures, or several summed; plain data, so it crosses the cluster's IPC. */
export interface QueryFigures {
  /** [outcome][transport][type], flattened in that order. */
  counts: Float64Array;
  /** [outcome][bucket]: queries whose time fell in that bucket (not cumulative); the last is +Inf. */
  latency: Float64Array;
  /** [outcome]: seconds summed. */
  latencySum: Float64Array;
  /** Intercepted queries by the table entry that answered (a wildcard counts as itself). */
  names: Map<string, number>;
}

export function emptyFigures(): QueryFigures {
  return {
    counts: new Float64Array(OUTCOMES.length * PER_OUTCOME),
    latency: new Float64Array(OUTCOMES.length * BUCKETS),
    latencySum: new Float64Array(OUTCOMES.length),
    names: new Map(),
  };
}

/** A name's count, changed in place: one map lookup per query instead of a get and a set. */
interface Tally {
  n: number;
}

export class QueryStats {
  /** The figures but the names, which are kept as tallies below. */
  private readonly figures: Omit<QueryFigures, 'names'> = emptyFigures();
  /** Intercepted queries by owner (QueryFigures.names, as snapshot() gives it). */
  private readonly names = new Map<string, Tally>();

  /** `maxNames`: names counted on their own; queries for the rest count under OTHER_NAMES. */
  constructor(private readonly maxNames: number) {}

  record(outcome: Outcome, transport: Transport, qtype: number, seconds: number): void {
    const o = OUTCOME_INDEX[outcome];
    const type = qtype === NO_TYPE ? 0 : TYPE_INDEX[qtype];
    this.figures.counts[o * PER_OUTCOME + TRANSPORT_INDEX[transport] * TYPE_LABELS.length + type]++;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
    this.figures.latency[o * BUCKETS + bucket]++;
    this.figures.latencySum[o] += seconds;
  }

  /** An intercepted query answered by the entry `owner`. */
  answeredBy(owner: string): void {
    const names = this.names;
    const seen = names.get(owner);
    if (seen !== undefined) seen.n++;
    else if (names.size < this.maxNames) names.set(owner, { n: 1 });
    else {
      const other = names.get(OTHER_NAMES);
      if (other !== undefined) other.n++;
      else names.set(OTHER_NAMES, { n: 1 });
    }
  }

  /** A copy, for a scrape. */
  snapshot(): QueryFigures {
    return {
      counts: this.figures.counts.slice(),
      latency: this.figures.latency.slice(),
      latencySum: this.figures.latencySum.slice(),
      names: new Map([...this.names].map(([name, tally]) => [name, tally.n])),
    };
  }
}

/** Several processes' figures as one; a name over the limit in the sum still has its own series. */
export function sumFigures(all: readonly QueryFigures[]): QueryFigures {
  const total = emptyFigures();
  for (const f of all) {
    add(total.counts, f.counts);
    add(total.latency, f.latency);
    add(total.latencySum, f.latencySum);
    for (const [name, n] of f.names) total.names.set(name, (total.names.get(name) ?? 0) + n);
  }
  return total;
}

function add(into: Float64Array, from: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] += from[i];
}

/** Each (outcome, transport, type) with its count, for the labelled counter. */
export function* countSeries(f: QueryFigures): Generator<[{ outcome: string; transport: string; type: string }, number]> {
  for (let o = 0; o < OUTCOMES.length; o++) {
    for (let t = 0; t < TRANSPORTS.length; t++) {
      for (let y = 0; y < TYPE_LABELS.length; y++) {
        const n = f.counts[o * PER_OUTCOME + t * TYPE_LABELS.length + y];
        if (n > 0) yield [{ outcome: OUTCOMES[o], transport: TRANSPORTS[t], type: TYPE_LABELS[y] }, n];
      }
    }
  }
}

/** Queries by outcome alone. */
export function outcomeTotals(f: QueryFigures): Record<Outcome, number> {
  const totals = {} as Record<Outcome, number>;
  OUTCOMES.forEach((outcome, o) => {
    let n = 0;
    for (let i = o * PER_OUTCOME; i < (o + 1) * PER_OUTCOME; i++) n += f.counts[i];
    totals[outcome] = n;
  });
  return totals;
}

/** The latency histogram of `outcome`: cumulative counts per bucket bound (the last is +Inf), and the sum. */
export function latencyOf(f: QueryFigures, outcome: Outcome): { cumulative: number[]; sum: number } {
  const o = OUTCOME_INDEX[outcome];
  const cumulative: number[] = [];
  let running = 0;
  for (let b = 0; b < BUCKETS; b++) {
    running += f.latency[o * BUCKETS + b];
    cumulative.push(running);
  }
  return { cumulative, sum: f.latencySum[o] };
}
