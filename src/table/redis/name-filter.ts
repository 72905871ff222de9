// A compact in-process set of names, kept as 64-bit fingerprints: it tells RedisTable which
// names cannot be in the table, so a query for them needs no Redis round trip.
//
// Why not a library: this sits on the query path of every forwarded name, so a lookup must
// not allocate; entries are deleted as the table changes; and memory per name must stay
// small. Plain Bloom filters cannot delete; the counting Bloom and cuckoo filters of
// bloom-filters 3.0.4 (npm) hash with xxhashjs through per-call objects: measured on 100k
// names, 71k and 94k absent-name checks per second against 5.4M here, and 1.4-3 s per
// 100k names added. A Set<string> is as fast but holds every string: 77 MB of heap for
// 1M names like n123456.million.test, against 16 MB here.
// Here: open addressing with linear probing over one Int32Array of (hi, lo) pairs,
// 8 bytes per slot, at most MAX_LOAD full (13-27 bytes per name), grown by doubling,
// deletions by backward shift (no tombstones, so probe chains never rot).
//
// Why a false positive is harmless: two names with the same fingerprint make an absent
// name look possibly present; the caller then reads Redis and finds nothing. The chance
// for one absent name against 1M stored ones is 1e6 / 2^64, about 5e-14.
// The one way to be wrong: names X and Y share a fingerprint, both are stored (the set
// holds it once), and X is deleted; Y then looks absent (a false negative) until the set
// is rebuilt. The chance that any two of 1M names share a 64-bit fingerprint is about
// n^2 / 2^65, 3e-8; RedisTable rebuilds the set on every resync.

/** Grow when more than this share of the slots is taken. Absent names end their probe at
 *  the first empty slot: at 0.6 that is ~3.6 slots on average, within one or two cache lines. */
const MAX_LOAD = 0.6;
const MIN_SLOTS = 16;

export class NameFilter {
  /** Slot i holds fingerprint (slots[2i], slots[2i+1]); (0, 0) marks an empty slot. */
  private slots: Int32Array;
  private mask: number;
  private count = 0;
  private limit: number;
  // The last hash() result: two fields instead of a returned pair, so hashing allocates nothing.
  private hi = 0;
  private lo = 0;

  /** `expected`: how many names will be added, so loading does not have to grow. */
  constructor(expected = 0) {
    const slots = slotsFor(expected);
    this.slots = new Int32Array(slots * 2);
    this.mask = slots - 1;
    this.limit = Math.floor(slots * MAX_LOAD);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the slot array. */
  get bytes(): number {
    return this.slots.byteLength;
  }

  has(name: string): boolean {
    this.hash(name);
    return this.find(this.hi, this.lo) >= 0;
  }

  /** True when the name was not there before. */
  add(name: string): boolean {
    this.hash(name);
    return this.insert(this.hi, this.lo);
  }

  /** True when the name was there. */
  delete(name: string): boolean {
    this.hash(name);
    const at = this.find(this.hi, this.lo);
    if (at < 0) return false;
    this.removeAt(at);
    return true;
  }

  clear(): void {
    this.slots = new Int32Array(MIN_SLOTS * 2);
    this.mask = MIN_SLOTS - 1;
    this.limit = Math.floor(MIN_SLOTS * MAX_LOAD);
    this.count = 0;
  }

  /** Whether this set holds a fingerprint that `other` lacks (names `other` would miss). */
  hasAnyNotIn(other: NameFilter): boolean {
    const s = this.slots;
    for (let j = 0; j < s.length; j += 2) {
      const hi = s[j];
      const lo = s[j + 1];
      if ((hi !== 0 || lo !== 0) && other.find(hi, lo) < 0) return true;
    }
    return false;
  }

  /**
   * Two independent 32-bit hashes of the name's UTF-16 units in one pass: FNV-1a, and a
   * MurmurHash3-style mix of each unit; both finished with Murmur3's fmix32 so every input
   * bit reaches every output bit (the slot index is taken from the low bits of `hi`).
   */
  private hash(name: string): void {
    const n = name.length;
    let a = 0x811c9dc5 | 0;
    let b = 0x9747b28c ^ n;
    for (let i = 0; i < n; i++) {
      const c = name.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      let k = Math.imul(c, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      b ^= Math.imul(k, 0x1b873593);
      b = (b << 13) | (b >>> 19);
      b = (Math.imul(b, 5) + 0xe6546b64) | 0;
    }
    a ^= n;
    a ^= a >>> 16;
    a = Math.imul(a, 0x85ebca6b);
    a ^= a >>> 13;
    a = Math.imul(a, 0xc2b2ae35);
    a ^= a >>> 16;
    b ^= b >>> 16;
    b = Math.imul(b, 0x85ebca6b);
    b ^= b >>> 13;
    b = Math.imul(b, 0xc2b2ae35);
    b ^= b >>> 16;
    this.hi = a | 0;
    this.lo = a === 0 && b === 0 ? 1 : b | 0; // (0, 0) is the empty mark
  }

  /** The slot holding the fingerprint, or -1. */
  private find(hi: number, lo: number): number {
    const s = this.slots;
    const mask = this.mask;
    for (let i = hi & mask; ; i = (i + 1) & mask) {
      const h = s[i << 1];
      const l = s[(i << 1) + 1];
      if (h === hi && l === lo) return i;
      if (h === 0 && l === 0) return -1;
    }
  }

  private insert(hi: number, lo: number): boolean {
    const s = this.slots;
    const mask = this.mask;
    let i = hi & mask;
    for (; ; i = (i + 1) & mask) {
      const h = s[i << 1];
      const l = s[(i << 1) + 1];
      if (h === hi && l === lo) return false;
      if (h === 0 && l === 0) break;
    }
    s[i << 1] = hi;
    s[(i << 1) + 1] = lo;
    if (++this.count > this.limit) this.grow();
    return true;
  }

  /**
   * Backward-shift deletion: empties slot `at`, then moves each later member of the run
   * into the hole when the hole is no farther from that member's home slot than where it
   * sits now, so every member stays reachable from its home without tombstones.
   */
  private removeAt(at: number): void {
    const s = this.slots;
    const mask = this.mask;
    let hole = at;
    for (let j = (at + 1) & mask; ; j = (j + 1) & mask) {
      const h = s[j << 1];
      const l = s[(j << 1) + 1];
      if (h === 0 && l === 0) break;
      const home = h & mask;
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        s[hole << 1] = h;
        s[(hole << 1) + 1] = l;
        hole = j;
      }
    }
    s[hole << 1] = 0;
    s[(hole << 1) + 1] = 0;
    this.count--;
  }

  private grow(): void {
    const old = this.slots;
    const slots = (this.mask + 1) * 2;
    this.slots = new Int32Array(slots * 2);
    this.mask = slots - 1;
    this.limit = Math.floor(slots * MAX_LOAD);
    this.count = 0;
    for (let j = 0; j < old.length; j += 2) {
      if (old[j] !== 0 || old[j + 1] !== 0) this.insert(old[j], old[j + 1]);
    }
  }
}

/** The power of two of slots that holds `expected` names below MAX_LOAD. */
function slotsFor(expected: number): number {
  let slots = MIN_SLOTS;
  while (Math.floor(slots * MAX_LOAD) < expected) slots *= 2;
  return slots;
}
