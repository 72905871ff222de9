// Entries merged from zone records and zone files: each address once, the lowest TTL.

import { DivertError } from '../../errors.js';
import type { EntryData } from '../../entry/entry.js';

/** Addresses of one name checked for repeats by a scan, up to this many; beyond, by a Set. */
const SCANNED = 8;

/**
 * Entries merged record by record, or file by file: each address once, where it was
 * first seen, and the lowest TTL. A name with many addresses has a Set, not a list scan
 * per record, so a file of many records for one name costs what its size does; a file of
 * many names with a few addresses each makes no Set at all.
 */
export class MergedEntries {
  /** In the order the names were first seen. */
  readonly entries = new Map<string, EntryData>();
  /** Every address of an entry that has more than SCANNED. */
  private readonly seen = new Map<EntryData, Set<string>>();

  /** One address record: `field` is the family, `address` canonical. */
  addRecord(name: string, field: 'a' | 'aaaa', address: string, ttl: number): void {
    const data = this.entries.get(name);
    if (!data) {
      this.entries.set(name, field === 'a' ? { a: [address], aaaa: [], ttl } : { a: [], aaaa: [address], ttl });
      return;
    }
    if (ttl < data.ttl) data.ttl = ttl;
    this.addAddress(data, field, address);
  }

  /** One file's entry; rules, weights and pick may come from one file only. */
  addEntry(name: string, data: EntryData): void {
    let into = this.entries.get(name);
    if (!into) {
      into = { a: [], aaaa: [], ttl: data.ttl };
      this.entries.set(name, into);
    }
    for (const address of data.a) this.addAddress(into, 'a', address);
    for (const address of data.aaaa) this.addAddress(into, 'aaaa', address);
    into.ttl = Math.min(into.ttl, data.ttl);
    if (data.rules || data.weights || data.pick !== undefined) {
      if (into.rules || into.weights || into.pick !== undefined) {
        throw new DivertError('BAD_ZONE', `${name}: rules or weights are given in two zone files (expected one ;divert line per name)`);
      }
      if (data.weights !== undefined) into.weights = data.weights;
      if (data.pick !== undefined) into.pick = data.pick;
      if (data.rules !== undefined) into.rules = data.rules;
    }
  }

  /** Appends `address` to the entry's list of its family unless the entry has it already. */
  private addAddress(data: EntryData, field: 'a' | 'aaaa', address: string): void {
    const seen = this.seen.get(data);
    if (seen) {
      const before = seen.size;
      if (seen.add(address).size === before) return; // one hash lookup, not has() and add()
    } else {
      // IPv4 and IPv6 texts never collide: a scan of the one family's list is enough
      if (data[field].includes(address)) return;
      if (data.a.length + data.aaaa.length >= SCANNED) this.seen.set(data, new Set([...data.a, ...data.aaaa, address]));
    }
    data[field].push(address);
  }
}
