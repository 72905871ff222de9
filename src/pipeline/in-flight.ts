// The queries waiting for an answer (a forwarded one, or a table lookup) across every
// query path in use: a reload's new path and the old one finishing its forwarded queries
// count here together, so that a drain waits for all of them.

export class InFlight {
  private count = 0;
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.count;
  }

  begin(): void {
    this.count++;
  }

  end(): void {
    if (--this.count === 0 && this.waiters.length > 0) for (const done of this.waiters.splice(0)) done();
  }

  /** Resolves once none is waiting, or after `timeoutMs` (a forwarded query ends by the query timeout). */
  idle(timeoutMs: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.push(done);
    });
  }
}
