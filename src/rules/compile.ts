// An entry's rules and load sharing, compiled once per change into tables the query path
// only reads: records encoded per answer (and per first address when shared), networks
// as numeric masks, time windows as minutes in a zone. A query then costs a loop over
// one Int32Array, a look at the zone's local time (computed once a minute) and at most
// one random draw.

import ipaddr from 'ipaddr.js';
import { parseCidr } from '../net/cidr.js';
import { DAYS, type EntryData, type Rule, type Sharing } from '../entry/entry.js';
import { TYPE_A, TYPE_AAAA } from '../wire/header.js';
import type { Ecs } from '../wire/edns.js';
import { compileAnswers, encodeRecords, type CompiledAnswers, type Selection, type Selector } from '../wire/answers.js';
import { localTimeIn, zoneId } from './local-time.js';
import { minutesOf } from '../entry/check-rules.js';

/** How many IPv6 clients (and, per entry, ECS subnets) are remembered once worked out. */
export const MAX_REMEMBERED_CLIENTS = 10_000;

/** `map`'s value for `key`, made once; the map is emptied when it reaches the bound. */
function remember<V>(map: Map<string, V>, key: string, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    if (map.size >= MAX_REMEMBERED_CLIENTS) map.clear();
    value = make();
    map.set(key, value);
  }
  return value;
}

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
  // an address without a weight weighs 1 (see Sharing in table.ts); all at 0: all equal
  const weights: number[] = addresses.map((address) => sharing.weights?.[address] ?? 1);
  if (!weights.some((w) => w > 0)) weights.fill(1);
  const count = Math.min(sharing.pick ?? addresses.length, addresses.length);
  // stable sort: equal weights keep their list order
  const byWeight = addresses.map((_, i) => i).sort((x, y) => weights[y] - weights[x]);
  const encode = (order: number[]) => encodeRecords(type, ttl, order.map((i) => addresses[i]));
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
  /** Network addresses, `words` per network (host bits zero, as checked). */
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

/** A rule's days (bit 0 = Monday) and window in minutes of the local day, in zone `zone`. */
interface Window {
  days: number;
  from: number;
  to: number;
  zone: number;
}

function compileWindow(rule: Rule): Window | null {
  if (!rule.days && !rule.from) return null;
  let days = 0x7f;
  if (rule.days) {
    days = 0;
    for (const day of rule.days) days |= 1 << DAYS.indexOf(day);
  }
  return {
    days,
    from: rule.from ? minutesOf(rule.from) : 0,
    to: rule.to ? minutesOf(rule.to) : 1440,
    zone: zoneId(rule.tz ?? 'UTC'),
  };
}

/**
 * Whether the window holds at local `day` and `minute`. A window whose end is before its
 * start runs past midnight, and `days` then names the day the window started: fri
 * 22:00–06:00 holds from Friday 22:00 to Saturday 06:00.
 */
function windowHolds(days: number, from: number, to: number, day: number, minute: number): boolean {
  if (from < to) return minute >= from && minute < to && (days & (1 << day)) !== 0;
  if (minute >= from) return (days & (1 << day)) !== 0;
  if (minute < to) return (days & (1 << ((day + 6) % 7))) !== 0;
  return false;
}

// ---------------------------------------------------------------------------------
// The query path's view of an entry: one Int32Array and one records buffer
//
// A query touches every object on its path once, with caches cold from the kernel's
// work on the packet in between, and on this kind of machine each object costs a cache
// and TLB miss. So what a query walks is two objects per entry: `code`, holding the rules
// (STRIDE numbers each, then their IPv4 networks as (network, mask) pairs) and the
// answers (a descriptor per family of each rule and of the default), and `blob`, every
// record the entry can answer, end to end. Objects per rule, list and window are kept
// only for the ECS path, which needs the scopes.

const HEADER = 3; // n, default A descriptor, default AAAA descriptor
const STRIDE = 9;
const HAS_NETWORKS = 1;
const HAS_WINDOW = 2;
// per rule, from HEADER + i * STRIDE: 0 flags, 1 first IPv4 network (index of its pair),
// 2 IPv4 networks, 3 days, 4 from, 5 to, 6 zone, 7 A descriptor, 8 AAAA descriptor.
// A descriptor: m (variants), count (records each), total weight, then per variant its
// cumulative weight and the start and end of its records in the blob.

interface Program {
  code: Int32Array;
  blob: Buffer;
}

function compileProgram(rules: readonly CompiledRule[], entryA: Family, entryAaaa: Family): Program {
  const words: number[] = [rules.length, 0, 0];
  const chunks: Buffer[] = [];
  let bytes = 0;
  const describe = (family: Family): number => {
    const at = words.length;
    const variants = family.fixed ? [family.fixed] : family.variants;
    words.push(variants.length, family.count, family.fixed ? 0 : family.total);
    variants.forEach((records, k) => {
      words.push(family.fixed ? 0 : family.cumulative[k], bytes, bytes + records.length);
      chunks.push(records);
      bytes += records.length;
    });
    return at;
  };
  words.length = HEADER + rules.length * STRIDE;
  words.fill(0, HEADER);
  rules.forEach((rule, i) => {
    const at = HEADER + i * STRIDE;
    words[at] = (rule.hasNetworks ? HAS_NETWORKS : 0) | (rule.window ? HAS_WINDOW : 0);
    words[at + 1] = words.length;
    words[at + 2] = rule.v4.prefixes.length;
    for (let k = 0; k < rule.v4.prefixes.length; k++) words.push(rule.v4.nets[k] | 0, maskWord(rule.v4.prefixes[k], 0) | 0);
    if (rule.window) {
      words[at + 3] = rule.window.days;
      words[at + 4] = rule.window.from;
      words[at + 5] = rule.window.to;
      words[at + 6] = rule.window.zone;
    }
  });
  rules.forEach((rule, i) => {
    words[HEADER + i * STRIDE + 7] = describe(rule.a);
    words[HEADER + i * STRIDE + 8] = describe(rule.aaaa);
  });
  words[1] = describe(entryA);
  words[2] = describe(entryAaaa);
  return { code: Int32Array.from(words), blob: Buffer.concat(chunks, bytes) };
}

/** Rule i's window at `now` (true for a rule without one). */
function windowAt(code: Int32Array, i: number, now: number): boolean {
  const at = HEADER + i * STRIDE;
  if ((code[at] & HAS_WINDOW) === 0) return true;
  const local = localTimeIn(code[at + 6], now);
  return windowHolds(code[at + 3], code[at + 4], code[at + 5], local.day, local.minute);
}

/** Whether rule i's IPv4 networks hold `v4` (an address as a 32-bit number). */
function holdsV4(code: Int32Array, i: number, v4: number): boolean {
  const at = HEADER + i * STRIDE;
  for (let k = code[at + 1], end = k + 2 * code[at + 2]; k < end; k += 2) {
    if ((v4 & code[k + 1]) === code[k]) return true;
  }
  return false;
}

/** The descriptor of answer i (rule i, or the default when i = n) for `qtype`. */
function descriptorOf(code: Int32Array, i: number, qtype: number): number {
  const aaaa = qtype === TYPE_AAAA ? 1 : 0;
  return i < code[0] ? code[HEADER + i * STRIDE + 7 + aaaa] : code[1 + aaaa];
}

/** Draws a variant of descriptor `at` (variant k with probability its weight / total). */
function select(code: Int32Array, blob: Buffer, at: number, scope: number | null, out: Selection): Selection {
  const m = code[at];
  let k = 0;
  if (m > 1) {
    const r = Math.random() * code[at + 2];
    while (k < m - 1 && code[at + 3 + 3 * k] <= r) k++;
  }
  const v = at + 3 + 3 * k;
  out.records = blob.subarray(code[v + 1], code[v + 2]);
  out.count = code[at + 1];
  out.scope = scope;
  return out;
}

/**
 * A dotted-quad client address (or IPv4-mapped ::ffff:a.b.c.d) as a 32-bit number, or -1
 * for anything else. Reads the characters in place: no parse, no lookup.
 */
function ipv4Of(text: string): number {
  let i = text.length > 7 && text.charCodeAt(0) === 0x3a && /^::ffff:/i.test(text) ? 7 : 0;
  let value = 0;
  for (let part = 0; part < 4; part++) {
    let octet = 0;
    let digits = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      digits++;
    }
    if (digits === 0 || digits > 3 || octet > 255) return -1;
    value = value * 256 + octet;
    if (part < 3) {
      if (text.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
  }
  return i === text.length ? value : -1;
}

// ---------------------------------------------------------------------------------
// The entry

interface CompiledRule {
  v4: NetList;
  v6: NetList;
  hasNetworks: boolean;
  window: Window | null;
  a: Family;
  aaaa: Family;
}

/** What a client address or ECS subnet makes of the rules' network conditions. */
interface Verdict {
  /** Per rule: 1 when its networks hold the client (or it has none). */
  holds: Uint8Array;
  /** Per rule and last for "no rule": the reply's scope. */
  scopes: Uint8Array;
}

function compileRule(rule: Rule, data: EntryData, entryA: Family, entryAaaa: Family): CompiledRule {
  const own = sharingOf(rule);
  // the rule's sharing if it has any; else the entry's, for a family it takes from the entry
  const a = rule.a ? compileFamily(TYPE_A, data.ttl, rule.a, own) : own ? compileFamily(TYPE_A, data.ttl, data.a, own) : entryA;
  const aaaa = rule.aaaa ? compileFamily(TYPE_AAAA, data.ttl, rule.aaaa, own)
    : own ? compileFamily(TYPE_AAAA, data.ttl, data.aaaa, own) : entryAaaa;
  const nets = rule.networks ? compileNets(rule.networks) : { v4: emptyNets(), v6: emptyNets() };
  return { ...nets, hasNetworks: rule.networks !== undefined, window: compileWindow(rule), a, aaaa };
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

// Client addresses as words, shared by every entry: one hot map instead of a verdict map
// per entry, which with many entries costs a cache miss per query.
const parsedClients = new Map<string, Words | null>();

function wordsOfClient(client: string): Words | null {
  return remember(parsedClients, client, () => clientWords(client));
}

function ecsWords(ecs: Ecs): Words | null {
  try {
    return wordsOf(ecs.family === 1 ? ipaddr.IPv4.parse(ecs.address) : ipaddr.IPv6.parse(ecs.address));
  } catch {
    return null;
  }
}

/**
 * The entry's answers, with `select` when it has rules or load sharing. A plain entry
 * compiles exactly as compileAnswers() does, so its query path is unchanged.
 */
export function compileEntry(data: EntryData): CompiledAnswers {
  if (!data.rules && !data.weights && data.pick === undefined) return compileAnswers(data);

  const sharing = sharingOf(data);
  const entryA = compileFamily(TYPE_A, data.ttl, data.a, sharing);
  const entryAaaa = compileFamily(TYPE_AAAA, data.ttl, data.aaaa, sharing);
  const rules = (data.rules ?? []).map((rule) => compileRule(rule, data, entryA, entryAaaa));
  const n = rules.length;

  const anyNetworks = rules.some((r) => r.hasNetworks);
  // no client information (no networks in the rules, ECS /0, an unreadable subnet):
  // network rules never hold, and the answer is the same for everyone (scope 0)
  const blind: Verdict = { holds: Uint8Array.from(rules.map((r) => (r.hasNetworks ? 0 : 1))), scopes: new Uint8Array(n + 1) };

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

  /** Which rules' networks hold an ECS subnet, and the scope each answer holds for. */
  function verdictFor(address: Words | null, sourcePrefix: number): Verdict {
    if (!address) return blind;
    const family = address.length === 1 ? 'v4' : 'v6';
    const words = address.length;
    const holds = new Uint8Array(n);
    const scopes = new Uint8Array(n + 1);
    rules.forEach((r, i) => {
      if (!r.hasNetworks) {
        holds[i] = 1;
        scopes[i] = Math.min(sourcePrefix, before[family][i]);
        return;
      }
      const matched = widestMatch(r[family], words, address, sourcePrefix);
      if (matched < 0) return;
      holds[i] = 1;
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
    scopes[n] = Math.min(sourcePrefix, before[family][n]);
    return { holds, scopes };
  }

  // network verdicts per ECS subnet: a repeat subnet costs one lookup
  const verdicts = new Map<string, Verdict>();

  const program = compileProgram(rules, entryA, entryAaaa);
  const { code } = program;

  // With ECS the reply needs a scope as well: verdicts per subnet, worked out once each.
  const selectEcs = (ecs: Ecs, now: number, qtype: number, out: Selection): Selection => {
    // RFC 7871 7.1.2: source prefix 0 means "do not use my address"
    const verdict = !anyNetworks || ecs.sourcePrefix === 0
      ? blind
      : remember(verdicts, `${ecs.address}/${ecs.sourcePrefix}`, () => verdictFor(ecsWords(ecs), ecs.sourcePrefix));
    const { holds, scopes } = verdict;
    let i = 0;
    while (i < n && (holds[i] === 0 || !windowAt(code, i, now))) i++;
    return select(code, program.blob, descriptorOf(code, i, qtype), scopes[i], out);
  };

  /** Rule i's IPv6 networks and the client (IPv6 clients are rare enough to go through objects). */
  function holdsV6(i: number, client: string): boolean {
    const words = wordsOfClient(client);
    return words !== null && words.length === 4 && widestMatch(rules[i].v6, 4, words, 128) >= 0;
  }

  const compiled: RuledAnswers = {
    ttl: data.ttl,
    a: entryA.ordered,
    aCount: entryA.count,
    aaaa: entryAaaa.ordered,
    aaaaCount: entryAaaa.count,
    select: selectRecords,
    code,
    blob: program.blob,
    slow: { selectEcs, holdsV6 },
  };
  return compiled;
}

/** The paths that need objects: ECS (scopes) and IPv6 clients, both rare. */
interface SlowPaths {
  selectEcs(ecs: Ecs, now: number, qtype: number, out: Selection): Selection;
  holdsV6(i: number, client: string): boolean;
}

/** An entry with rules: what the query path reads sits on the entry itself, and `select`
 * is one function shared by every entry (called as its method), not a closure per entry. */
interface RuledAnswers extends CompiledAnswers {
  select: Selector;
  code: Int32Array;
  blob: Buffer;
  slow: SlowPaths;
}

// The common case: the client's own address, no scope.
function selectRecords(this: RuledAnswers, client: string, ecs: Ecs | null, now: number, qtype: number, out: Selection): Selection {
  if (ecs) return this.slow.selectEcs(ecs, now, qtype, out);
  const code = this.code;
  const n = code[0];
  let v4 = -2; // not read yet
  let i = 0;
  for (; i < n; i++) {
    if ((code[HEADER + i * STRIDE] & HAS_NETWORKS) !== 0) {
      if (v4 === -2) v4 = ipv4Of(client);
      if (v4 >= 0 ? !holdsV4(code, i, v4) : !this.slow.holdsV6(i, client)) continue;
    }
    if (windowAt(code, i, now)) break;
  }
  return select(code, this.blob, descriptorOf(code, i, qtype), null, out);
}
