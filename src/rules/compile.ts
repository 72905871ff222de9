// An entry's rules and load sharing, compiled once per change into tables the query path
// only reads: records encoded per answer (and per first address when shared), networks
// as numeric masks, time windows as minutes in a zone. A query then costs a loop over
// one Int32Array, a look at the zone's local time (computed once a minute) and at most
// one random draw.

import type { EntryData, Rule } from '../entry/entry.js';
import { TYPE_A, TYPE_AAAA } from '../wire/header.js';
import type { Ecs } from '../wire/edns.js';
import { compileAnswers, type CompiledAnswers, type Selection } from '../wire/answers.js';
import { descriptorOf, select, selectRecords, windowAt, type RuledAnswers } from './match.js';
import { compileNets, ecsWords, emptyNets, remember, samePrefix, widestMatch, wordsOfClient, type Words } from './networks.js';
import { compileProgram, type CompiledRule } from './program.js';
import { compileFamily, sharingOf, type Family } from './sharing.js';
import { compileWindow } from './time-window.js';

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
  const aaaa = rule.aaaa
    ? compileFamily(TYPE_AAAA, data.ttl, rule.aaaa, own)
    : own
      ? compileFamily(TYPE_AAAA, data.ttl, data.aaaa, own)
      : entryAaaa;
  const nets = rule.networks ? compileNets(rule.networks) : { v4: emptyNets(), v6: emptyNets() };
  return { ...nets, hasNetworks: rule.networks !== undefined, window: compileWindow(rule), a, aaaa };
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
    const verdict =
      !anyNetworks || ecs.sourcePrefix === 0
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
