// The versions of a RedisTable's own writes whose change messages have not come back yet,
// kept as ranges: one write's versions are consecutive (one script, one INCR after
// another), so an import of many names is one range, and each message costs O(1), not a
// walk over every version remembered.

/** Ranges remembered at most (a range per write whose messages are outstanding). */
const MAX_RANGES = 10_000;

interface Range {
  from: number;
  to: number;
}

export class OwnVersions {
  /** Disjoint, in version order. */
  private readonly ranges: Range[] = [];

  /** Remembers `versions` (ascending). */
  add(versions: readonly number[]): void {
    for (let i = 0; i < versions.length;) {
      let j = i;
      while (j + 1 < versions.length && versions[j + 1] === versions[j] + 1) j++;
      this.insert({ from: versions[i], to: versions[j] });
      i = j + 1;
    }
    // the oldest go first: their messages were lost, or will be taken for another's
    if (this.ranges.length > MAX_RANGES) this.ranges.splice(0, this.ranges.length - MAX_RANGES);
  }

  /**
   * Whether the message of `version` is one of ours, which is then forgotten. Messages come
   * in version order, so our versions below it will never come: they are forgotten too.
   */
  take(version: number): boolean {
    let below = 0;
    while (below < this.ranges.length && this.ranges[below].to < version) below++;
    if (below > 0) this.ranges.splice(0, below);
    const first = this.ranges[0];
    if (first === undefined || first.from > version) return false;
    first.from = version + 1;
    if (first.from > first.to) this.ranges.shift();
    return true;
  }

  private insert(range: Range): void {
    // writes settle in about the order Redis ran them: the place is nearly always the end
    let at = this.ranges.length;
    while (at > 0 && this.ranges[at - 1].from > range.from) at--;
    this.ranges.splice(at, 0, range);
  }
}
