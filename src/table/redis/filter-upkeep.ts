// The upkeep of the Redis store's name filter (name-filter.ts): every name of the
// entries hash, held in process so that lookups of names the table lacks (most forwarded
// traffic) need no Redis command. Loaded with HSCAN on first use, kept current from the
// change feed, rebuilt after a resync (the old filter serves meanwhile), retried after a
// failure. A name written while a scan runs is in the new filter either way; a name
// deleted meanwhile may stay as a stale fingerprint, which costs one Redis read, never a
// wrong answer.

import { DivertError } from '../../errors.js';
import type { ChangeEvent } from '../../entry/entry.js';
import { NameFilter } from './name-filter.js';
import { reason } from './redis-values.js';

/** Names per HSCAN page when loading the filter: ~1 MB of reply, a few ms of Redis time. */
const FILTER_PAGE = 5000;
/** After a failed load, try again this much later (a resync also starts one). */
const FILTER_RETRY_MS = 1000;

/** What the upkeep needs of the store. */
export interface FilterSource {
  /** HLEN of the entries hash. */
  count(): Promise<number>;
  /** One HSCAN page: the next cursor and the names. */
  scan(cursor: string, count: number): Promise<[string, string[]]>;
  report(err: Error): void;
  /** The rebuilt filter holds names the old one lacked: lookups it answered may have been wrong. */
  rebuiltWithNewNames(): void;
}

export class FilterUpkeep {
  /** Serves lookups once loaded. */
  private filter: NameFilter | null = null;
  /** The one being loaded (first load, or rebuild after a resync while the old one keeps serving). */
  private building: NameFilter | null = null;
  private loading: Promise<boolean> | null = null;
  /** Bumped by a resync (a running load starts over) and by close (it stops). */
  private generation = 0;
  /** Set by the first load: from then on the filter is kept (retried, rebuilt). */
  private wanted = false;
  private retry: NodeJS.Timeout | undefined;
  /** A load failed and none completed since: further failures are not reported again. */
  private failing = false;
  private closed = false;
  /** Completed loads, first and rebuilt. */
  loads = 0;
  /** Lookups answered "absent" by the filter alone. */
  skips = 0;

  constructor(
    private readonly source: FilterSource,
    private readonly enabled: boolean,
  ) {}

  /** The filter serving lookups, or null (and a load started) while there is none. */
  serving(): NameFilter | null {
    if (this.filter === null && !this.wanted && this.enabled && !this.closed) void this.load();
    return this.filter;
  }

  get ready(): boolean {
    return this.filter !== null;
  }

  get size(): number {
    return this.filter?.size ?? 0;
  }

  /** Every change reaches both the serving filter and the one being built. */
  apply(event: ChangeEvent): void {
    if (event.entry === null) {
      this.filter?.delete(event.name);
      this.building?.delete(event.name);
    } else {
      this.filter?.add(event.name);
      this.building?.add(event.name);
    }
  }

  /** Changes may have been missed: a load under way starts over, else one is started. */
  resync(): void {
    if (this.loading !== null) this.generation++;
    else if (this.wanted && !this.closed) void this.load();
  }

  /**
   * Loads the filter unless a load is running; resolves true when that load completed,
   * false when it failed (it is retried). Never rejects.
   */
  load(): Promise<boolean> {
    this.wanted = true;
    if (this.loading === null) {
      const loading = this.build().finally(() => {
        if (this.loading === loading) this.loading = null;
      });
      this.loading = loading;
    }
    return this.loading;
  }

  close(): void {
    this.closed = true;
    this.generation++; // a running load stops at its next page
    clearTimeout(this.retry);
    this.building = null;
  }

  private async build(): Promise<boolean> {
    for (;;) {
      if (this.closed) return false;
      const generation = this.generation;
      const started = Date.now();
      try {
        const expected = await this.source.count();
        if (generation !== this.generation) continue;
        const next = new NameFilter(expected);
        this.building = next;
        if (!(await this.scanInto(next, generation))) continue;
        this.building = null;
        const old = this.filter;
        this.filter = next;
        this.loads++;
        this.failing = false;
        // lookups answered from the old filter since the resync may have said "absent" for
        // names whose change messages were lost: whoever cached that must read again
        if (old !== null && next.hasAnyNotIn(old)) this.source.rebuiltWithNewNames();
        return true;
      } catch (err) {
        if (generation !== this.generation) continue;
        this.building = null;
        if (!this.failing) {
          this.failing = true;
          const meanwhile = this.filter ? 'the previous filter serves meanwhile' : 'lookups read Redis meanwhile';
          const message = `${reason(err)} (loading the name filter, after ${Date.now() - started} ms; ${meanwhile}; retrying every ${FILTER_RETRY_MS} ms)`;
          this.source.report(new DivertError('BACKEND_UNAVAILABLE', message, { cause: err }));
        }
        clearTimeout(this.retry);
        this.retry = setTimeout(() => {
          if (!this.closed && this.loading === null) void this.load();
        }, FILTER_RETRY_MS).unref();
        return false;
      }
    }
  }

  /** Adds every name of the entries hash; false when a resync or close superseded the load. */
  private async scanInto(filter: NameFilter, generation: number): Promise<boolean> {
    let cursor = '0';
    do {
      const [next, names] = await this.source.scan(cursor, FILTER_PAGE);
      if (generation !== this.generation) return false;
      for (const name of names) filter.add(name);
      cursor = next;
    } while (cursor !== '0');
    return true;
  }
}
