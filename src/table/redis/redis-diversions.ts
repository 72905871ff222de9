// The diversion records of a RedisStore: reading them, and reading back what the scripts
// of diversion-scripts.ts reply and publish. A record or message Redis holds is checked
// as a write would be: addresses of one family in canonical form.

import { checkAddress } from '../../entry/entry-ops.js';
import { compareAddresses, type DiversionChange, type DiversionListener, type DiversionRecord } from '../../entry/diversions.js';
import { DiversionListeners } from '../change-listeners.js';
import type { TableClient } from './redis-client.js';
import type { RedisReporter } from './redis-reporter.js';
import { reason } from './redis-values.js';

function recordOf(value: unknown): DiversionRecord {
  const v = value as Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new Error('not a JSON object');
  const from = checkAddress('from', v.from);
  const to = checkAddress('to', v.to);
  if (from.field !== to.field || from.address !== v.from || to.address !== v.to)
    throw new Error('from and to are not two canonical addresses of one family');
  if (typeof v.by !== 'string' || typeof v.at !== 'string') throw new Error('by or at missing');
  return Object.freeze({ from: from.address, to: to.address, by: v.by, at: v.at });
}

function changeOf(value: unknown): DiversionChange {
  const v = value as Record<string, unknown>;
  const record = recordOf(value);
  if (v.action !== 'set' && v.action !== 'delete') throw new Error('action is neither set nor delete');
  if (!Number.isSafeInteger(v.version)) throw new Error('version missing');
  return Object.freeze({ action: v.action, ...record, version: v.version as number });
}

export class RedisDiversions {
  /** `${prefix}{table}:diversions`, the hash of the records. */
  readonly key: string;
  readonly listeners: DiversionListeners;

  constructor(
    base: string,
    /** `${prefix}diversions`, where their changes are published. */
    readonly channel: string,
    private readonly reporter: RedisReporter,
  ) {
    this.key = `${base}diversions`;
    this.listeners = new DiversionListeners((err) => reporter.report(err));
  }

  /** Every readable record, by from in address order; an unreadable one is reported once and left out. */
  async list(client: TableClient): Promise<DiversionRecord[]> {
    const all = await this.reporter.run('HGETALL', () => client.hgetall(this.key));
    const records: DiversionRecord[] = [];
    for (const [from, raw] of Object.entries(all)) {
      const record = this.parse(from, raw, (value) => {
        const r = recordOf(value);
        if (r.from !== from) throw new Error(`it is the record of ${r.from}`);
        return r;
      });
      if (record) records.push(record);
    }
    return records.sort((x, y) => compareAddresses(x.from, y.from));
  }

  /** A change message (published, or replied by a script), or null when unreadable (reported once). */
  change(raw: string): DiversionChange | null {
    return this.parse(this.channel, raw, changeOf);
  }

  /** A stored record as a script replied it. */
  record(raw: string): DiversionRecord | null {
    return this.parse(this.key, raw, recordOf);
  }

  onChange(listener: DiversionListener): () => void {
    return this.listeners.add(listener);
  }

  private parse<T>(where: string, raw: string, read: (value: unknown) => T): T | null {
    try {
      return read(JSON.parse(raw));
    } catch (err) {
      this.reporter.reportOnce(where, raw, `a diversion in ${where} is unreadable (${reason(err)}); left out`);
      return null;
    }
  }
}

/** Whether a change of the feed is a diversion record's (the others are entries'). */
export function isDiversionChange(event: object): event is DiversionChange {
  return 'action' in event;
}
