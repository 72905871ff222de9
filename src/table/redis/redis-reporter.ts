// How the Redis store reports trouble: every failed call as BACKEND_UNAVAILABLE naming
// where and what, never the password; a connection outage once, when it starts; a bad
// stored value once per distinct value (memory bounded); a faulty error sink never
// breaks the caller.

import { DivertError } from '../../errors.js';

export class RedisReporter {
  private readonly reported = new Set<string>();
  /** Per connection: an outage is reported once, when it starts. */
  private readonly down = { main: false, feed: false };
  private lastError: Error | undefined;
  /** Until the store is connected, connection errors are only kept for its own error message. */
  connected = false;

  constructor(
    /** `redis at URL` with the password masked: where every message says it happened. */
    readonly where: string,
    private readonly password: string,
    private readonly sink: ((err: Error) => void) | undefined,
  ) {}

  report(err: Error): void {
    try {
      this.sink?.(err);
    } catch {
      // a faulty error sink must not break the caller either
    }
  }

  /** Reports a bad stored value once per distinct value. */
  reportOnce(where: string, raw: string, message: string): void {
    const id = `${where}\u0000${raw}`;
    if (this.reported.has(id)) return;
    if (this.reported.size >= 1024) this.reported.clear(); // bound memory, at worst report again
    this.reported.add(id);
    this.report(new Error(`${this.where}: ${message}`));
  }

  scrub(message: string): string {
    return this.password ? message.split(this.password).join('***') : message;
  }

  /** Runs one Redis call; any failure becomes BACKEND_UNAVAILABLE without the password. */
  async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new DivertError('BACKEND_UNAVAILABLE', `${this.where}: ${what} failed: ${this.scrub(message)}`, { cause: err });
    }
  }

  connectionError(which: 'main' | 'feed', err: Error): void {
    this.lastError = err;
    if (!this.connected || this.down[which]) return;
    this.down[which] = true;
    const what = which === 'feed' ? 'change feed: ' : '';
    this.report(new DivertError('BACKEND_UNAVAILABLE', `${this.where}: ${what}${this.scrub(err.message)}`, { cause: err }));
  }

  /** The connection is back: its next outage is reported again. */
  connectionReady(which: 'main' | 'feed'): void {
    this.down[which] = false;
  }

  unreachable(ms: number, what = ''): DivertError {
    const reason = this.lastError ? `: ${this.lastError.message}` : '';
    return new DivertError('BACKEND_UNAVAILABLE', this.scrub(`${this.where}: ${what}not reachable within ${ms} ms${reason}`));
  }
}
