// An entry's rules and load sharing, compiled once per change into tables the query path
// only reads: records encoded per answer (and per first address when shared), networks
// as numeric masks, time windows as a verdict cached until the next minute. A query then
// costs a Map lookup for its client, a loop over the rules and one random draw.

import ipaddr from 'ipaddr.js';
import { parseCidr } from '../pipeline/access.js';
import { DAYS, type EntryData, type Rule, type Sharing } from '../table/table.js';
import {
  compileAnswers, encodeRecords, TYPE_A, TYPE_AAAA,
  type AnswerRecords, type Choice, type CompiledAnswers, type Ecs,
} from '../wire/message.js';
import { localTime } from './local-time.js';
import { minutesOf } from './check.js';

/** How many client addresses (or ECS subnets) an entry remembers its network verdicts for. */
export const MAX_REMEMBERED_CLIENTS = 10_000;

// ---------------------------------------------------------------------------------
// Load sharing: one family's answer

/** One address family's answer: fixed records, or a weighted draw of the first address. */
interface Family {
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

function compileFamily(type: number, ttl: number, addresses: readonly string[], sharing: Sharing | null): Family {
  if (!sharing || addresses.length <= 1) {
    const records = encodeRecords(type, ttl, addresses);
    return { fixed: records, count: addresses.length, ordered: records, variants: [], cumulative: new Float64Array(0), total: 0 };
  }
  // an address without a weight weighs 1 (see Sharing in table.ts)
  const weights = addresses.map((address) => sharing.weights?.[address] ?? 1);
  const count = Math.min(sharing.pick ?? addresses.length, addresses.length);
  // stable sort: equal weights keep their list order
  const byWeight = addresses.map((_, i) => i).sort((x, y) => weights[y] - weights[x]);
  const encode = (order: number[]) => encodeRecords(type, ttl, order.slice(0, count).map((i) => addresses[i]));
  const candidates = byWeight.filter((i) => weights[i] > 0);
  const variants = candidates.map((first) => encode([first, ...byWeight.filter((i) => i !== first)]));
  const cumulative = new Float64Array(candidates.length);
  let total = 0;
  candidates.forEach((i, k) => {
    total += weights[i];
    cumulative[k] = total;
  });
  const ordered = encode(byWeight);
  const fixed = candidates.length === 1 ? variants[0] : null;
  return { fixed, count, ordered, variants, cumulative, total };
}

/** The family's records for one query: candidate k first with probability weight / total. */
function draw(family: Family): Buffer {
  if (family.fixed) return family.fixed;
  const r = Math.random() * family.total;
  const cumulative = family.cumulative;
  let low = 0;
  let high = cumulative.length - 1;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (cumulative[mid] > r) high = mid;
    else low = mid + 1;
  }
  return family.variants[low];
}

function sharingOf(s: Sharing): Sharing | null {
  return s.weights || s.pick !== undefined ? { weights: s.weights, pick: s.pick } : null;
}

// ---------------------------------------------------------------------------------
// Networks as numbers

/** An address as 32-bit words: one for IPv4, four for IPv6. */
type Words = Uint32Array;

function wordsOf(address: ipaddr.IPv4 | ipaddr.IPv6): Words {
  if (address.kind() === 'ipv4') {
    const o = (address as ipaddr.IPv4).octets;
    return Uint32Array.of(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0);
  }
  const p = (address as ipaddr.IPv6).parts;
  return Uint32Array.of(((p[0] << 16) | p[1]) >>> 0, ((p[2] << 16) | p[3]) >>> 0, ((p[4] << 16) | p[5]) >>> 0, ((p[6] << 16) | p[7]) >>> 0);
}

function maskWord(prefix: number, word: number): number {
  const bits = Math.max(0, Math.min(32, prefix - word * 32));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Whether a and b agree on their first `prefix` bits. */
function samePrefix(a: Words, aAt: number, b: Words, bAt: number, words: number, prefix: number): boolean {
  for (let w = 0; w < words; w++) {
    const mask = maskWord(prefix, w);
    if (((a[aAt + w] & mask) >>> 0) !== ((b[bAt + w] & mask) >>> 0)) return false;
  }
  return true;
}

/** One family's networks of one rule. */
interface NetList {
  /** Network addresses, `words` per network. */
  nets: Uint32Array;
  prefixes: Uint8Array;
}

function emptyNets(): NetList {
  return { nets: new Uint32Array(0), prefixes: new Uint8Array(0) };
}

function compileNets(networks: readonly string[]): { v4: NetList; v6: NetList } {
  const v4: { words: number[]; prefixes: number[] } = { words: [], prefixes: [] };
  const v6: { words: number[]; prefixes: number[] } = { words: [], prefixes: [] };
  for (const network of networks) {
    const [net, prefix] = parseCidr(network);
    const into = net.kind() === 'ipv4' ? v4 : v6;
    into.words.push(...wordsOf(net));
    into.prefixes.push(prefix);
  }
  const list = (l: typeof v4): NetList => ({ nets: Uint32Array.from(l.words), prefixes: Uint8Array.from(l.prefixes) });
  return { v4: list(v4), v6: list(v6) };
}

/**
 * The prefix length of the widest network in `list` that holds `address` (words per
 * network: `words`), or -1. Networks longer than `maxPrefix` do not count: an ECS subnet
 * lies within a network only when it is no longer than the subnet's source prefix.
 */
function widestMatch(list: NetList, words: number, address: Words, maxPrefix: number): number {
  let best = -1;
  for (let k = 0; k < list.prefixes.length; k++) {
    const prefix = list.prefixes[k];
    if (prefix > maxPrefix || (best >= 0 && prefix >= best)) continue;
    if (samePrefix(address, 0, list.nets, k * words, words, prefix)) best = prefix;
  }
  return best;
}

// ---------------------------------------------------------------------------------
// Time windows

const MINUTE_MS = 60_000;

/**
 * A rule's days and window as a check of `now` (ms). The verdict holds until the next
 * minute: every zone in use today is a whole number of minutes off UTC, so a local
 * minute starts on a UTC one.
 *
 * A window whose end is before its start runs past midnight, and `days` then names the
 * day the window started: fri 22:00–06:00 holds from Friday 22:00 to Saturday 06:00.
 */
function compileWindow(rule: Rule): ((now: number) => boolean) | null {
  if (!rule.days && !rule.from) return null;
  const tz = rule.tz ?? 'UTC';
  let days = 0x7f;
  if (rule.days) {
    days = 0;
    for (const day of rule.days) days |= 1 << DAYS.indexOf(day);
  }
  const from = rule.from ? minutesOf(rule.from) : 0;
  const to = rule.to ? minutesOf(rule.to) : 1440;
  const holds = (day: number, minute: number): boolean => {
    if (from < to) return minute >= from && minute < to && (days & (1 << day)) !== 0;
    if (minute >= from) return (days & (1 << day)) !== 0;
    if (minute < to) return (days & (1 << ((day + 6) % 7))) !== 0;
    return false;
  };
  let validFrom = 0;
  let validUntil = 0;
  let verdict = false;
  return (now) => {
    if (now >= validFrom && now < validUntil) return verdict;
    const local = localTime(tz, now);
    verdict = holds(local.day, local.minute);
    validFrom = Math.floor(now / MINUTE_MS) * MINUTE_MS;
    validUntil = validFrom + MINUTE_MS;
    return verdict;
  };
}

// ---------------------------------------------------------------------------------
// The entry

interface CompiledRule {
  v4: NetList;
  v6: NetList;
  hasNetworks: boolean;
  window: ((now: number) => boolean) | null;
  a: Family;
  aaaa: Family;
  /** The records when neither family is drawn per query. */
  fixed: AnswerRecords | null;
  /** The choice without ECS, when `fixed`. */
  fixedChoice: Choice | null;
}

/** What a client address or ECS subnet makes of the rules' network conditions. */
interface Verdict {
  /** Per rule: 1 when its networks hold the client (or it has none). */
  holds: Uint8Array;
  /** With ECS, per rule and last for "no rule": the reply's scope; null without ECS. */
  scopes: Uint8Array | null;
}

function records(a: Family, aaaa: Family): AnswerRecords | null {
  return a.fixed && aaaa.fixed ? { a: a.fixed, aCount: a.count, aaaa: aaaa.fixed, aaaaCount: aaaa.count } : null;
}

function compileRule(rule: Rule, data: EntryData, entryA: Family, entryAaaa: Family): CompiledRule {
  const own = sharingOf(rule);
  // the rule's sharing if it has any; else the entry's, for a family it takes from the entry
  const a = rule.a ? compileFamily(TYPE_A, data.ttl, rule.a, own) : own ? compileFamily(TYPE_A, data.ttl, data.a, own) : entryA;
  const aaaa = rule.aaaa ? compileFamily(TYPE_AAAA, data.ttl, rule.aaaa, own)
    : own ? compileFamily(TYPE_AAAA, data.ttl, data.aaaa, own) : entryAaaa;
  const nets = rule.networks ? compileNets(rule.networks) : { v4: emptyNets(), v6: emptyNets() };
  const fixed = records(a, aaaa);
  return {
    ...nets,
    hasNetworks: rule.networks !== undefined,
    window: compileWindow(rule),
    a,
    aaaa,
    fixed,
    fixedChoice: fixed ? { answers: fixed, scope: null } : null,
  };
}

function answersOf(a: Family, aaaa: Family, fixed: AnswerRecords | null): AnswerRecords {
  return fixed ?? { a: draw(a), aCount: a.count, aaaa: draw(aaaa), aaaaCount: aaaa.count };
}

/** The client's address as words (IPv4-mapped IPv6 as IPv4), or null when unreadable. */
function clientWords(client: string): Words | null {
  try {
    // ipaddr.process turns ::ffff:a.b.c.d (dual-stack sockets) into a.b.c.d
    return wordsOf(ipaddr.process(client.split('%')[0]));
  } catch {
    return null;
  }
}

function ecsWords(ecs: Ecs): Words | null {
  try {
    return wordsOf(ecs.family === 1 ? ipaddr.IPv4.parse(ecs.address) : ipaddr.IPv6.parse(ecs.address));
  } catch {
    return null;
  }
}

/**
 * The entry's answers, with `choose` when it has rules or load sharing. A plain entry
 * compiles exactly as compileAnswers() does, so its query path is unchanged.
 */
export function compileEntry(data: EntryData): CompiledAnswers {
  if (!data.rules && !data.weights && data.pick === undefined) return compileAnswers(data);

  const sharing = sharingOf(data);
  const entryA = compileFamily(TYPE_A, data.ttl, data.a, sharing);
  const entryAaaa = compileFamily(TYPE_AAAA, data.ttl, data.aaaa, sharing);
  const rules = (data.rules ?? []).map((rule) => compileRule(rule, data, entryA, entryAaaa));
  const defaultFixed = records(entryA, entryAaaa);
  const defaultChoice: Choice | null = defaultFixed ? { answers: defaultFixed, scope: null } : null;
  const n = rules.length;

  const anyNetworks = rules.some((r) => r.hasNetworks);
  // no client information (no networks in the rules, or ECS /0): network rules never hold
  const noNetworks = (withScopes: boolean): Verdict => ({
    holds: Uint8Array.from(rules.map((r) => (r.hasNetworks ? 0 : 1))),
    scopes: withScopes ? new Uint8Array(n + 1) : null,
  });
  const blindClient = noNetworks(false);
  const blindEcs = noNetworks(true);

  // per family: the longest prefix among the networks of the rules before rule i (i = n: all)
  const longestBefore = (family: 'v4' | 'v6'): Uint8Array => {
    const out = new Uint8Array(n + 1);
    let longest = 0;
    rules.forEach((r, i) => {
      out[i] = longest;
      for (const p of r[family].prefixes) longest = Math.max(longest, p);
    });
    out[n] = longest;
    return out;
  };
  const before = { v4: longestBefore('v4'), v6: longestBefore('v6') };

  function verdictFor(address: Words | null, sourcePrefix: number, withScopes: boolean): Verdict {
    if (!address) return withScopes ? blindEcs : blindClient;
    const family = address.length === 1 ? 'v4' : 'v6';
    const words = address.length;
    const holds = new Uint8Array(n);
    const scopes = withScopes ? new Uint8Array(n + 1) : null;
    rules.forEach((r, i) => {
      if (!r.hasNetworks) {
        holds[i] = 1;
        if (scopes) scopes[i] = Math.min(sourcePrefix, before[family][i]);
        return;
      }
      const matched = widestMatch(r[family], words, address, sourcePrefix);
      if (matched < 0) return;
      holds[i] = 1;
      if (!scopes) return;
      // the answer must also hold across the scope: widen past earlier networks that overlap
      let scope = matched;
      for (let j = 0; j < i; j++) {
        const earlier = rules[j][family];
        for (let k = 0; k < earlier.prefixes.length; k++) {
          const p = earlier.prefixes[k];
          if (p > scope && samePrefix(address, 0, earlier.nets, k * words, words, Math.min(p, matched))) scope = p;
        }
      }
      scopes[i] = Math.min(sourcePrefix, scope);
    });
    if (scopes) scopes[n] = Math.min(sourcePrefix, before[family][n]);
    return { holds, scopes };
  }

  // network verdicts per client address (or ECS subnet): a repeat client costs one lookup
  const remembered = new Map<string, Verdict>();
  function remember(key: string, make: () => Verdict): Verdict {
    let verdict = remembered.get(key);
    if (verdict === undefined) {
      if (remembered.size >= MAX_REMEMBERED_CLIENTS) remembered.clear();
      verdict = make();
      remembered.set(key, verdict);
    }
    return verdict;
  }

  function verdictOf(client: string, ecs: Ecs | null): Verdict {
    if (ecs) {
      // RFC 7871 7.1.2: source prefix 0 means "do not use my address"
      if (!anyNetworks || ecs.sourcePrefix === 0) return blindEcs;
      // "/" keeps subnet keys apart from plain client addresses
      return remember(`${ecs.address}/${ecs.sourcePrefix}`, () => verdictFor(ecsWords(ecs), ecs.sourcePrefix, true));
    }
    if (!anyNetworks) return blindClient;
    return remember(client, () => verdictFor(clientWords(client), 128, false));
  }

  const choose = (client: string, ecs: Ecs | null, now: number): Choice => {
    const verdict = verdictOf(client, ecs);
    const holds = verdict.holds;
    for (let i = 0; i < n; i++) {
      if (holds[i] === 0) continue;
      const rule = rules[i];
      if (rule.window && !rule.window(now)) continue;
      if (!verdict.scopes && rule.fixedChoice) return rule.fixedChoice;
      return { answers: answersOf(rule.a, rule.aaaa, rule.fixed), scope: verdict.scopes ? verdict.scopes[i] : null };
    }
    if (!verdict.scopes && defaultChoice) return defaultChoice;
    return { answers: answersOf(entryA, entryAaaa, defaultFixed), scope: verdict.scopes ? verdict.scopes[n] : null };
  };

  return {
    ttl: data.ttl,
    a: entryA.ordered,
    aCount: entryA.count,
    aaaa: entryAaaa.ordered,
    aaaaCount: entryAaaa.count,
    choose,
  };
}
