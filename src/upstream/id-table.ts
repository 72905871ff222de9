// The queries of one upstream socket or connection by message ID (0..65535): open
// addressing on two flat arrays, linear probing, deletion by backward shift (no
// tombstones), doubled when half full, never shrunk (it holds what is in flight and, for a
// few seconds, the IDs given up on: a few hundred at most).
//
// Not a Map, for the garbage collector: a Map that sees a set and a delete per query is
// rehashed every few hundred queries, and V8 links each old hash table to its successor
// (for iterators). Once one table has been promoted to the old generation, the dead table
// keeps the new one, and through it every query in flight, alive in each scavenge; each
// generation of tables and queries is promoted in turn until the next full collection.
// Forwarding over TCP (dnsperf -m tcp -c 20 -q 200, 10,000 names, 2 workers) that
// promoted ~1.8 MB per scavenge in two runs out of three, and a worker's old space swung
// between 15 and 58 MB: RSS 145 MB, against 105 MB with this table. Here a slot, once
// deleted, points at nothing, and growing clears the old arrays.

const EMPTY = -1;
/** Fibonacci hashing: IDs are random, but the table must not depend on it. */
const GOLDEN = 0x9e3779b1;

export class IdTable<T> {
  private keys: Int32Array;
  private values: (T | undefined)[];
  private shift: number;
  private mask: number;
  private count = 0;

  /** `capacity`: slots to start with, rounded up to a power of two (at least 8). */
  constructor(capacity = 16) {
    let bits = 3;
    while (1 << bits < capacity) bits++;
    this.keys = new Int32Array(1 << bits).fill(EMPTY);
    this.values = new Array<T | undefined>(1 << bits).fill(undefined);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
  }

  get size(): number {
    return this.count;
  }

  get(id: number): T | undefined {
    const i = this.find(id);
    return i < 0 ? undefined : this.values[i];
  }

  has(id: number): boolean {
    return this.find(id) >= 0;
  }

  set(id: number, value: T): void {
    const existing = this.find(id);
    if (existing >= 0) {
      this.values[existing] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    let i = this.home(id);
    while (this.keys[i] !== EMPTY) i = (i + 1) & this.mask;
    this.keys[i] = id;
    this.values[i] = value;
    this.count++;
  }

  delete(id: number): boolean {
    let hole = this.find(id);
    if (hole < 0) return false;
    this.count--;
    // pull back every entry after the hole that may not sit past it
    for (let j = (hole + 1) & this.mask; this.keys[j] !== EMPTY; j = (j + 1) & this.mask) {
      const home = this.home(this.keys[j]);
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.keys[hole] = this.keys[j];
      this.values[hole] = this.values[j];
      hole = j;
    }
    this.keys[hole] = EMPTY;
    this.values[hole] = undefined;
    return true;
  }

  clear(): void {
    this.keys.fill(EMPTY);
    this.values.fill(undefined);
    this.count = 0;
  }

  /** Every value, as an array of its own: the table may change while the caller goes through it. */
  list(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== EMPTY) out.push(this.values[i] as T);
    return out;
  }

  /** Deletes every entry for which `drop` says true. */
  deleteWhere(drop: (value: T, id: number) => boolean): void {
    const ids: number[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] !== EMPTY && drop(this.values[i] as T, this.keys[i])) ids.push(this.keys[i]);
    }
    for (const id of ids) this.delete(id);
  }

  private home(id: number): number {
    return Math.imul(id, GOLDEN) >>> this.shift;
  }

  private find(id: number): number {
    for (let i = this.home(id); ; i = (i + 1) & this.mask) {
      const key = this.keys[i];
      if (key === id) return i;
      if (key === EMPTY) return -1;
    }
  }

  private grow(): void {
    const keys = this.keys;
    const values = this.values;
    const bits = 33 - this.shift;
    this.keys = new Int32Array(1 << bits).fill(EMPTY);
    this.values = new Array<T | undefined>(1 << bits).fill(undefined);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.count = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) this.set(keys[i], values[i] as T);
    values.fill(undefined); // a promoted old array must not keep queries alive
  }
}
