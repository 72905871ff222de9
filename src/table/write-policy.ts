// What a write may put in the table beyond what makes an entry valid (validate.ts): how
// many addresses an entry may answer with (--max-addresses), and whether a wildcard
// directly below a top-level domain may be written (--allow-tld-wildcards). Applied where
// a write enters (PUT and import on the admin API, zone seeds, DNS UPDATE), never when a
// store reads its own data back: a replica with a lower cap still reads what another wrote.
//
// A diversion is not checked: it replaces one address by another, or drops it where the
// other is listed already, so it never adds an address nor a name.

import { DivertError } from '../errors.js';
import type { EntryData } from '../entry/entry.js';
import { isWildcard } from '../entry/names.js';

export interface WriteLimits {
  /** Addresses one entry, and each of its rules, may answer with: IPv4 and IPv6 together. */
  maxAddresses: number;
  /** Whether `*.com` (a wildcard whose parent is a top-level domain) may be written. */
  allowTldWildcards: boolean;
}

export class WritePolicy {
  /** The defaults of --max-addresses and --allow-tld-wildcards. */
  static readonly DEFAULT = new WritePolicy({ maxAddresses: 64, allowTldWildcards: false });

  readonly maxAddresses: number;
  readonly allowTldWildcards: boolean;

  constructor(limits: WriteLimits) {
    this.maxAddresses = limits.maxAddresses;
    this.allowTldWildcards = limits.allowTldWildcards;
  }

  /**
   * Throws DivertError BAD_NAME or BAD_ADDRESS when `name` (normalised) may not be written
   * with `data`. `where` goes before the message (`import `, `FILE: `).
   */
  checkEntry(name: string, data: EntryData, where = ''): void {
    const refusal = this.refusal(name, data);
    if (refusal) throw new DivertError(refusal.code, `${where}"${name}": ${refusal.message}`, { cause: refusal });
  }

  /** Why `name` may not be written with `data` (a message that does not repeat the name); null when it may. */
  refusal(name: string, data: EntryData): DivertError | null {
    const problem = this.nameProblem(name) ?? this.addressProblem(data);
    return problem && new DivertError(problem.code, problem.message);
  }

  private nameProblem(name: string): { code: 'BAD_NAME'; message: string } | null {
    // the root is no table name at all (normalizeName); one label under `*.` is a TLD
    if (this.allowTldWildcards || !isWildcard(name) || name.indexOf('.', 2) !== -1) return null;
    return {
      code: 'BAD_NAME',
      message:
        `a wildcard directly below the top-level domain "${name.slice(2)}" would answer for every name under it; ` +
        'refused unless the operator gives --allow-tld-wildcards',
    };
  }

  private addressProblem(data: EntryData): { code: 'BAD_ADDRESS'; message: string } | null {
    const limit = `the limit is ${this.maxAddresses} (--max-addresses)`;
    const count = (a: readonly string[], aaaa: readonly string[]) =>
      `${a.length + aaaa.length} addresses (${a.length} IPv4, ${aaaa.length} IPv6)`;
    if (data.a.length + data.aaaa.length > this.maxAddresses) {
      return { code: 'BAD_ADDRESS', message: `a and aaaa hold ${count(data.a, data.aaaa)}; ${limit}` };
    }
    // a rule answers from its own list of a family, or else from the entry's
    for (const [i, rule] of (data.rules ?? []).entries()) {
      const a = rule.a ?? data.a;
      const aaaa = rule.aaaa ?? data.aaaa;
      if (a.length + aaaa.length > this.maxAddresses) {
        return { code: 'BAD_ADDRESS', message: `rules[${i}] answers with ${count(a, aaaa)}, its own lists or else the entry's; ${limit}` };
      }
    }
    return null;
  }
}
