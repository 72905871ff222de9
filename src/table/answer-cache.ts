// What the query path asks: "does divert answer this name, and with which bytes?" An
// LRU of compiled answers, and of names a shared store said are *not* intercepted, in
// front of any table; every change of the table evicts what it affects, so a name seen
// since its last change never waits on the store.

import { LRUCache } from 'lru-cache';
import { compileEntry } from '../rules/compile.js';
import type { CompiledAnswers } from '../wire/answers.js';
import { isWildcard } from '../entry/names.js';
import { type ChangeEvent, type Entry } from '../entry/entry.js';
import { type TableView } from './table.js';
import { lruGet } from '../lru-get.js';

/** What the cache holds for a name: compiled answers, or NOT_INTERCEPTED. */
const NOT_INTERCEPTED = Object.freeze({ intercepted: false as const });
type Slot = CompiledAnswers | typeof NOT_INTERCEPTED;

export type Resolution = CompiledAnswers | null;

export interface AnswerCacheOptions {
  maxNames: number;
  /** A store fault on lookup: the name is treated as not intercepted this once (not cached). */
  onLookupError?: (err: unknown, name: string) => void;
}

export class AnswerCache {
  private readonly slots: LRUCache<string, Slot>;
  private readonly pending = new Map<string, Promise<Resolution>>();
  private readonly compiled = new WeakMap<Entry, CompiledAnswers>();
  /**
   * The cached names whose answer a wildcard's change may change (answered by a wildcard,
   * or not intercepted), under each parent they have (".shop.example"): a change of
   * *.shop.example evicts those below it without a walk over the whole cache, so an
   * import of many wildcards costs what it changes.
   */
  private readonly byParent = new Map<string, Set<string>>();
  /** Bumped by every change: a lookup that overlapped a change must not be cached. */
  private generation = 0;
  private readonly unsubscribe: (() => void)[];
  hits = 0;
  misses = 0;

  constructor(
    private readonly table: TableView,
    private readonly options: AnswerCacheOptions,
  ) {
    this.slots = new LRUCache<string, Slot>({
      max: options.maxNames,
      // evicted, deleted or replaced
      dispose: (slot, name) => {
        if (followsWildcards(name, slot)) this.index(name, false);
      },
    });
    this.unsubscribe = [
      table.onChange((event) => this.invalidate(event)),
      // changes may have been missed while a shared store was unreachable: read everything again
      table.onResync(() => this.clear()),
    ];
  }

  /** Synchronous when the name is cached or the store is in process. */
  resolve(name: string): Resolution | Promise<Resolution> {
    const slot = lruGet(this.slots, name);
    if (slot !== undefined) {
      this.hits++;
      return slot === NOT_INTERCEPTED ? null : (slot as CompiledAnswers);
    }
    this.misses++;
    // only a shared store's lookups are ever pending: an in-process table's cost no lookup here
    const inFlight = this.pending.size === 0 ? undefined : this.pending.get(name);
    if (inFlight) return inFlight;

    const generation = this.generation;
    let found: Entry | null | Promise<Entry | null>;
    try {
      found = this.table.lookupName(name);
    } catch (err) {
      this.options.onLookupError?.(err, name);
      return null;
    }
    if (!(found instanceof Promise)) {
      // answered in process (the memory table, or the Redis table's name filter): no
      // cheaper to cache than to ask again, so only entries found take a slot. Names that
      // are not intercepted (every forwarded name) do not churn the cache or its memory.
      return found === null ? null : this.store(name, found, generation);
    }

    const promise = found.then(
      (entry) => this.store(name, entry, generation),
      (err: unknown) => {
        this.options.onLookupError?.(err, name);
        return null;
      },
    );
    // a change may have replaced this lookup in `pending` with a newer one: leave that be
    const settled: Promise<Resolution> = promise.finally(() => {
      if (this.pending.get(name) === settled) this.pending.delete(name);
    });
    this.pending.set(name, settled);
    return settled;
  }

  private store(name: string, entry: Entry | null, generation: number): Resolution {
    const answers = entry ? this.compile(entry) : null;
    if (generation === this.generation) this.setSlot(name, answers ?? NOT_INTERCEPTED);
    return answers;
  }

  private setSlot(name: string, slot: Slot): void {
    this.slots.set(name, slot);
    if (followsWildcards(name, slot)) this.index(name, true);
  }

  /** Adds `name` to (or removes it from) the sets of its parents in byParent. */
  private index(name: string, add: boolean): void {
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const parent = name.slice(dot);
      let names = this.byParent.get(parent);
      if (add) {
        if (!names) this.byParent.set(parent, (names = new Set()));
        names.add(name);
      } else if (names?.delete(name) && names.size === 0) {
        this.byParent.delete(parent);
      }
    }
  }

  /** Entries found under several names (a wildcard) are compiled once. */
  private compile(entry: Entry): CompiledAnswers {
    let answers = this.compiled.get(entry);
    if (!answers) {
      answers = compileEntry(entry);
      answers.owner = entry.name;
      this.compiled.set(entry, answers);
    }
    return answers;
  }

  private invalidate(event: ChangeEvent): void {
    this.generation++;
    this.pending.clear();
    if (isWildcard(event.name)) {
      this.slots.delete(event.name);
      // *.parent answers every name below parent that has no entry of its own
      const below = this.byParent.get(event.name.slice(1));
      if (below) for (const name of [...below]) this.slots.delete(name);
    } else if (event.entry) {
      // a name's own entry is its answer: a name just changed is likely asked next, and
      // with several workers each one answers it without a lookup (even with Redis down)
      this.setSlot(event.name, this.compile(event.entry));
    } else {
      this.slots.delete(event.name);
    }
  }

  private clear(): void {
    this.generation++;
    this.pending.clear();
    this.slots.clear();
  }

  get size(): number {
    return this.slots.size;
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    this.slots.clear();
  }
}

/** Whether a wildcard's change may change this cached answer: it is not the name's own entry. */
function followsWildcards(name: string, slot: Slot): boolean {
  return slot === NOT_INTERCEPTED || (slot as CompiledAnswers).owner !== name;
}
