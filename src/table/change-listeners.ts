// The listeners of one table's changes (and of its resync signals). A listener that throws
// is reported and skipped: it must never break the write that caused the change, nor the
// other listeners.

import type { ChangeEvent } from '../entry/entry.js';
import type { DiversionChange } from '../entry/diversions.js';

export class Listeners<T> {
  private readonly listeners = new Set<(event: T) => void>();

  constructor(private readonly onError?: (err: Error) => void) {}

  add(listener: (event: T) => void): () => void {
    // wrapped, so the same function added twice is called twice and removed once
    const wrapped = (event: T) => listener(event);
    this.listeners.add(wrapped);
    return () => {
      this.listeners.delete(wrapped);
    };
  }

  emit(event: T): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        try {
          this.onError?.(err instanceof Error ? err : new Error(String(err)));
        } catch {
          // a faulty error sink must not break the write either
        }
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}

export class ChangeListeners extends Listeners<ChangeEvent> {}

/** Listeners told that changes may have been missed. */
export class ResyncListeners extends Listeners<void> {}

export class DiversionListeners extends Listeners<DiversionChange> {}
