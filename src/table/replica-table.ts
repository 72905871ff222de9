// A worker's copy of the primary's in-process table: a snapshot when the worker starts,
// then every change, in order, over the cluster's IPC channel. Read-only: writes go
// through the primary (admin API), which owns the table.

import { ChangeListeners, ResyncListeners } from './change-listeners.js';
import { EntryMap, type WorkerView } from './table.js';
import { type ChangeEvent, type ChangeListener, type Entry } from '../entry/entry.js';
import { freezeEntry } from './store-ops.js';

export class ReplicaTable implements WorkerView {
  private readonly entries = new EntryMap();
  private readonly listeners: ChangeListeners;
  private readonly resyncListeners = new ResyncListeners();

  constructor(onError?: (err: Error) => void) {
    this.listeners = new ChangeListeners(onError);
  }

  /** Replaces everything: what was derived from the old contents must be read again. */
  load(entries: readonly Entry[]): void {
    this.entries.clear();
    for (const entry of entries) this.entries.set(entry.name, freezeEntry(entry));
    this.resyncListeners.emit();
  }

  apply(event: ChangeEvent): void {
    if (event.entry) this.entries.set(event.name, freezeEntry(event.entry));
    else this.entries.delete(event.name);
    this.listeners.emit(event.entry ? { ...event, entry: this.entries.get(event.name)! } : event);
  }

  lookupName(name: string): Entry | null {
    return this.entries.lookupName(name);
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  onResync(listener: () => void): () => void {
    return this.resyncListeners.add(listener);
  }

  /** As ready as the primary's table, which counts itself. */
  isReady(): boolean {
    return true;
  }

  /** The primary's changes come in order on one channel, before any message sent after them: none is outstanding here. */
  async barrier(): Promise<void> {}

  async close(): Promise<void> {
    this.listeners.clear();
    this.resyncListeners.clear();
  }
}
