// --query-log: one JSON line per query (or per sampled query), written by pino through
// its asynchronous destination, so a slow disk delays the log, never the answers. With
// several workers each appends to the same file; pino writes whole lines, and appends
// of whole lines to a local file do not interleave.

import { pino, type Logger } from 'pino';
import { rcodeName, typeName } from '../wire/header.js';
import { isUnreadable, readQuery } from '../wire/query.js';
import type { Client } from '../transport/handler.js';
import type { Outcome } from './outcome.js';

export interface QueryLogOptions {
  /** A file path, or "-" for stdout. */
  to: string;
  /** The fraction of queries written, in (0, 1]. */
  sample: number;
  /** Tests inject one; Math.random by default. */
  random?: () => number;
}

export class QueryLog {
  private readonly destination: ReturnType<typeof pino.destination>;
  private readonly log: Logger;
  private readonly random: () => number;
  private sample: number;

  constructor(private readonly options: QueryLogOptions) {
    this.destination = pino.destination({ dest: options.to === '-' ? 1 : options.to, sync: false, mkdir: true, append: true });
    this.log = pino(
      { base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
      this.destination,
    );
    this.random = options.random ?? Math.random;
    this.sample = options.sample;
  }

  /** After a reload: the new sampling fraction, and the file opened anew (it may have been rotated). */
  reopen(sample: number): void {
    this.sample = sample;
    if (this.options.to !== '-') this.destination.reopen();
  }

  /** Whether to write this query: decided before anything is read from it. */
  sampled(): boolean {
    return this.sample >= 1 || this.random() < this.sample;
  }

  write(msg: Buffer, client: Client, outcome: Outcome, reply: Buffer | null, ms: number): void {
    const q = readQuery(msg);
    const question = isUnreadable(q) ? {} : { name: q.name === '' ? '.' : q.name, type: typeName(q.qtype) };
    const rcode = reply && reply.length >= 4 ? rcodeName(reply[3] & 0x0f) : null;
    this.log.info({ client: client.address, transport: client.transport, ...question, outcome, rcode, ms: Math.round(ms * 1000) / 1000 });
  }

  /** Writes out what is buffered, and closes the file. */
  close(): Promise<void> {
    if (this.options.to === '-') {
      // stdout stays open for the rest of the process
      try {
        this.destination.flushSync();
      } catch {
        // not ready yet: nothing was written
      }
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.destination.once('close', () => resolve());
      this.destination.once('error', () => resolve());
      this.destination.end();
    });
  }
}
