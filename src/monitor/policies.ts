// The answer of a service, from its mirrors' health: pure functions, one per policy, and
// the rise/fall counting that turns single check results into a mirror's state.

import type { Policy } from './config.js';

export type MirrorState = 'unknown' | 'up' | 'down';

export interface Health {
  state: MirrorState;
  /** Consecutive successful checks, and consecutive failed ones (one of them is 0). */
  okRun: number;
  failRun: number;
}

export const UNKNOWN: Health = { state: 'unknown', okRun: 0, failRun: 0 };

/**
 * The first result sets the state at once (a start should not wait rise × interval);
 * after that an up mirror goes down after `fall` failures in a row, a down one comes
 * back after `rise` successes in a row, so one lost probe does not flap the answer.
 */
export function nextHealth(health: Health, ok: boolean, rise: number, fall: number): Health {
  const okRun = ok ? health.okRun + 1 : 0;
  const failRun = ok ? 0 : health.failRun + 1;
  let state = health.state;
  if (state === 'unknown') state = ok ? 'up' : 'down';
  else if (state === 'up' && failRun >= fall) state = 'down';
  else if (state === 'down' && okRun >= rise) state = 'up';
  return { state, okRun, failRun };
}

export interface MirrorView {
  address: string;
  priority: number;
  weight: number;
  up: boolean;
  /** The last load figure read (least-loaded needs one for every up mirror). */
  load?: number;
}

export interface Answer {
  /** Sorted, canonical addresses, IPv4 and IPv6 together. */
  addresses: string[];
  /** weighted only: address → weight, for the chosen addresses. */
  weights?: Record<string, number>;
}

export interface PolicyParams {
  policy: Policy;
  count: number;
  overload: number;
  hysteresis: number;
}

/** What least-loaded remembers between evaluations, so that its hysteresis can hold. */
export interface PolicyMemory {
  /** The addresses of the last answer. */
  members: string[];
  /** Mirrors that crossed `overload` and have not yet fallen below overload − hysteresis. */
  overloaded: string[];
}

export interface Choice {
  /** null when no mirror is up: the caller keeps the last answer. */
  answer: Answer | null;
  memory: PolicyMemory;
}

function sortedAddresses(addresses: Iterable<string>): string[] {
  return [...new Set(addresses)].sort(compareAddresses);
}

/** IPv4 before IPv6, then numerically, so that answers and logs read the same every time. */
export function compareAddresses(x: string, y: string): number {
  const v6x = x.includes(':');
  const v6y = y.includes(':');
  if (v6x !== v6y) return v6x ? 1 : -1;
  if (!v6x) {
    const nx = x.split('.').map(Number);
    const ny = y.split('.').map(Number);
    for (let i = 0; i < 4; i++) if (nx[i] !== ny[i]) return nx[i] - ny[i];
    return 0;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

function failover(up: MirrorView[]): Answer {
  const best = Math.min(...up.map((m) => m.priority));
  return { addresses: sortedAddresses(up.filter((m) => m.priority === best).map((m) => m.address)) };
}

function weighted(up: MirrorView[]): Answer {
  const weights: Record<string, number> = {};
  for (const m of up) weights[m.address] = m.weight;
  return { addresses: sortedAddresses(up.map((m) => m.address)), weights };
}

/** Lower load first; ties by priority, then address, so the choice is stable. */
function byLoad(x: MirrorView, y: MirrorView): number {
  return (x.load ?? Infinity) - (y.load ?? Infinity) || x.priority - y.priority || compareAddresses(x.address, y.address);
}

/**
 * The `count` least-loaded up mirrors. A mirror at or above `overload` leaves, and returns
 * only below overload − hysteresis; a member is replaced only by a mirror lower by more
 * than `hysteresis`, so two mirrors of similar load do not swap places every interval.
 * When every up mirror is overloaded, the least loaded of them still answer: an
 * overloaded server serves better than no answer.
 */
function leastLoaded(up: MirrorView[], params: PolicyParams, memory: PolicyMemory): Choice {
  const wasOverloaded = new Set(memory.overloaded);
  const overloaded: string[] = [];
  for (const m of up) {
    const load = m.load ?? Infinity;
    const limit = wasOverloaded.has(m.address) ? params.overload - params.hysteresis : params.overload;
    if (load >= limit) overloaded.push(m.address);
  }
  const out = new Set(overloaded);
  let eligible = up.filter((m) => !out.has(m.address));
  if (eligible.length === 0) eligible = up;

  const previous = new Set(memory.members);
  const members = eligible
    .filter((m) => previous.has(m.address))
    .sort(byLoad)
    .slice(0, params.count);
  const others = eligible.filter((m) => !members.includes(m)).sort(byLoad);
  while (members.length < params.count && others.length > 0) members.push(others.shift()!);
  // swap the worst member for the best outsider while that outsider is clearly better
  for (;;) {
    members.sort(byLoad);
    const worst = members[members.length - 1];
    const best = others[0];
    if (!worst || !best || (best.load ?? Infinity) >= (worst.load ?? Infinity) - params.hysteresis) break;
    members[members.length - 1] = others.shift()!;
    others.push(worst);
    others.sort(byLoad);
  }
  const addresses = sortedAddresses(members.map((m) => m.address));
  return { answer: { addresses }, memory: { members: addresses, overloaded: overloaded.sort(compareAddresses) } };
}

/** The answer of a service whose mirrors all have a known state. */
export function choose(mirrors: MirrorView[], params: PolicyParams, memory: PolicyMemory): Choice {
  const up = mirrors.filter((m) => m.up);
  if (up.length === 0) return { answer: null, memory };
  if (params.policy === 'least-loaded') return leastLoaded(up, params, memory);
  const answer =
    params.policy === 'failover'
      ? failover(up)
      : params.policy === 'weighted'
        ? weighted(up)
        : { addresses: sortedAddresses(up.map((m) => m.address)) };
  return { answer, memory: { members: answer.addresses, overloaded: [] } };
}
