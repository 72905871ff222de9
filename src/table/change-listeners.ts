// The listeners of one table's changes. A listener that throws is reported and skipped:
// it must never break the write that caused the change, nor the other listeners.

import type { ChangeEvent, ChangeListener } from './table.js';

export class ChangeListeners {
  private readonly listeners = new Set<ChangeListener>();

  constructor(private readonly onError?: (err: Error) => void) {}

  add(listener: ChangeListener): () => void {
    // wrapped, so the same function added twice is called twice and removed once
    const wrapped: ChangeListener = (event) => listener(event);
    this.listeners.add(wrapped);
    return () => {
      this.listeners.delete(wrapped);
    };
  }

  emit(event: ChangeEvent): void {
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
