// Brings the names the monitor steers to the answers it wants, through the admin API:
// conditional writes only when an answer differs, a hold (never a silent overwrite)
// when someone else changed a name, and back-off while the admin API is away.

import type { Logger } from 'pino';
import { AdminError, type AdminClient } from '../client/admin-client.js';
import type { Entry, EntryData, HistoryRecord } from '../entry/entry.js';
import { SEED_AUTHOR } from '../table/store-ops.js';
import { withAddresses } from '../entry/entry-ops.js';
import type { MonitorMetrics } from './metrics.js';

/** What the monitor decides for a name: its addresses, and for weighted its weights and pick. */
export interface Wanted {
  a: string[];
  aaaa: string[];
  weights?: Record<string, number>;
  pick?: number;
}

export interface Hold {
  /** ms since the epoch. */
  since: number;
  /** When writing resumes; null: until the monitor restarts. */
  until: number | null;
  version: number;
  by: string;
}

export interface NameStatus {
  name: string;
  service: string;
  /** The entry as last read or written; null: not intercepted; undefined: not read yet. */
  entry: Entry | null | undefined;
  wanted: Wanted | undefined;
  inSync: boolean;
  hold: Hold | undefined;
  lastPush: { at: number; version: number } | undefined;
  lastError: string | undefined;
}

export interface SyncOptions {
  /** Our X-Divert-Client: a change by this name is ours (or an earlier run's). */
  id: string;
  manualHoldMs: number;
  refreshMs: number;
  /** How often a held name is read again, to see whether the hold can end. */
  holdRecheckMs: number;
}

interface NameState {
  name: string;
  service: string;
  ttl: number;
  wanted?: Wanted;
  seen?: Entry | null;
  /** The content the monitor last wrote. */
  wrote?: Wanted;
  hold?: Hold;
  lastPush?: { at: number; version: number };
  lastError?: string;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** The admin API is down or failing (no reply, or 5xx): back off and try everything again. */
class Outage extends Error {}

function isTransient(err: unknown): boolean {
  return err instanceof AdminError && (err.status === undefined || err.status >= 500);
}

/** Answer sets compared as sets; weights compared over the answer (an address without one weighs 1). */
export function sameContent(entry: EntryData | null | undefined, wanted: Wanted | undefined): boolean {
  if (!entry || !wanted) return false;
  const set = (list: string[]) => [...list].sort().join(',');
  if (set(entry.a) !== set(wanted.a) || set(entry.aaaa) !== set(wanted.aaaa)) return false;
  for (const address of [...wanted.a, ...wanted.aaaa]) {
    if ((entry.weights?.[address] ?? 1) !== (wanted.weights?.[address] ?? 1)) return false;
  }
  return entry.pick === wanted.pick;
}

function describe(w: Wanted | EntryData | null | undefined): string {
  if (!w) return '(not intercepted)';
  const all = [...w.a, ...w.aaaa];
  return all.length === 0 ? '(no addresses)' : all.join(',');
}

export class TableSync {
  private readonly names = new Map<string, NameState>();
  private stopped = false;
  private running: Promise<void> | undefined;
  private woken = false;
  private wakeUp: (() => void) | undefined;
  private needRead = true;
  private nextRefresh = 0;
  private backoffMs = 0;
  private outage: { since: number; error: string } | undefined;

  constructor(
    private readonly admin: AdminClient,
    private readonly log: Logger,
    private readonly metrics: MonitorMetrics,
    private readonly options: SyncOptions,
  ) {
    metrics.adminUp.set(0);
  }

  /** Declares a name the monitor steers, with the TTL a new entry gets. */
  add(service: string, name: string, ttl: number): void {
    this.names.set(name, { name, service, ttl });
  }

  /** The answer wanted for a name (undefined: not decided yet); a change starts a pass. */
  want(name: string, wanted: Wanted | undefined): void {
    const state = this.names.get(name)!;
    state.wanted = wanted;
    this.wake();
  }

  /** The entry as last seen (for least-loaded to resume from the table's answer). */
  seen(name: string): Entry | null | undefined {
    return this.names.get(name)?.seen;
  }

  get adminDown(): { since: number; error: string } | undefined {
    return this.outage;
  }

  start(): void {
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.running;
  }

  status(): NameStatus[] {
    return [...this.names.values()].map((n) => ({
      name: n.name,
      service: n.service,
      entry: n.seen,
      wanted: n.wanted,
      inSync: sameContent(n.seen, n.wanted),
      hold: n.hold,
      lastPush: n.lastPush,
      lastError: n.lastError,
    }));
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.stopped || (wakeable && this.woken)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        if (wakeable || this.stopped) done();
      };
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        this.woken = false;
        await this.pass();
        this.recovered();
        this.backoffMs = 0;
        const held = [...this.names.values()].some((n) => n.hold);
        const untilRefresh = Math.max(0, this.nextRefresh - Date.now());
        await this.sleep(held ? Math.min(untilRefresh, this.options.holdRecheckMs) : untilRefresh, true);
      } catch (err) {
        if (this.stopped) return;
        const message = err instanceof Error ? err.message : String(err);
        if (!this.outage) {
          this.outage = { since: Date.now(), error: message };
          this.metrics.adminUp.set(0);
          this.log.error(
            { error: message },
            `admin API unreachable; checks go on, and changes are pushed once it answers (retrying with back-off up to ${BACKOFF_MAX_MS / 1000} s)`,
          );
        } else {
          this.outage.error = message;
        }
        this.needRead = true;
        this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs === 0 ? BACKOFF_MIN_MS : this.backoffMs * 2);
        // jitter, so that monitors restarted together do not retry in step
        await this.sleep(this.backoffMs * (0.5 + Math.random() / 2), false);
      }
    }
  }

  /** Reads what it must, then writes each name that differs from what is wanted. */
  private async pass(): Promise<void> {
    const now = Date.now();
    const readAll = this.needRead || now >= this.nextRefresh;
    for (const n of this.names.values()) {
      if (this.stopped) return;
      if (readAll || n.seen === undefined || n.hold) await this.read(n);
      await this.reconcile(n);
    }
    if (readAll) {
      this.needRead = false;
      this.nextRefresh = now + this.options.refreshMs;
    }
  }

  /** The first answer after an outage ends it; the pass it happens in reads every name again. */
  private recovered(): void {
    if (this.outage) {
      this.log.info(
        { downSeconds: Math.round((Date.now() - this.outage.since) / 1000) },
        `admin API at ${this.admin.where} answers again; every name is read again`,
      );
    }
    this.outage = undefined;
    this.metrics.adminUp.set(1);
  }

  private async call<T>(what: () => Promise<T>): Promise<T> {
    try {
      const result = await what();
      this.recovered();
      return result;
    } catch (err) {
      if (isTransient(err)) throw new Outage((err as Error).message);
      throw err;
    }
  }

  private async getEntry(n: NameState): Promise<Entry | null> {
    return this.call(() =>
      this.admin.get(n.name).catch((err: unknown) => {
        if (err instanceof AdminError && err.status === 404) return null;
        throw err;
      }),
    );
  }

  /**
   * Reads the entry. A version that moved to content the monitor neither wrote nor wants
   * is someone else's change — unless the history says it was ours or a zone seed (divert
   * restarted with an embedded table) — and starts a hold.
   */
  private async read(n: NameState): Promise<void> {
    const before = n.seen;
    let entry: Entry | null;
    try {
      entry = await this.getEntry(n);
    } catch (err) {
      if (err instanceof Outage) throw err;
      this.failed(n, 'read', err);
      return;
    }
    n.seen = entry;
    if (before === undefined) return; // the first read: the table is what it is
    const moved = (entry?.version ?? 0) !== (before?.version ?? 0);
    if (!moved || sameContent(entry, n.wanted) || sameContent(entry, n.wrote)) return;
    let last: HistoryRecord | undefined;
    try {
      last = (await this.call(() => this.admin.history(n.name))).history[0];
    } catch (err) {
      if (err instanceof Outage) throw err;
    }
    if (last && last.by !== this.options.id && last.op !== 'seed' && last.by !== SEED_AUTHOR) {
      this.conflict(n, entry, last);
    } else if (!last || last.op === 'seed') {
      this.log.warn(
        { name: n.name, service: n.service, now: describe(entry), version: entry?.version ?? 0 },
        `${n.name} was reset by a divert restart (${last ? 'zone seed' : 'no history'}); the monitor's answer is written again`,
      );
    }
  }

  private conflict(n: NameState, entry: Entry | null, last: HistoryRecord | undefined): void {
    const by = last?.by ?? 'unknown';
    const version = entry?.version ?? last?.version ?? 0;
    const now = Date.now();
    const until = this.options.manualHoldMs === 0 ? null : now + this.options.manualHoldMs;
    n.hold = { since: now, until, version, by };
    this.metrics.conflicts.inc({ service: n.service, name: n.name });
    this.metrics.held.set({ service: n.service, name: n.name }, 1);
    const holdText =
      until === null
        ? 'until the monitor restarts'
        : `for ${Math.round(this.options.manualHoldMs / 1000)} s, or until the table matches the monitor's answer again`;
    this.log.warn(
      { name: n.name, service: n.service, version, by, op: last?.op, table: describe(entry), wanted: describe(n.wanted) },
      `${n.name} was changed by "${by}" (version ${version}, ${describe(entry)}); the monitor does not overwrite it and holds its writes ${holdText}`,
    );
  }

  private async reconcile(n: NameState): Promise<void> {
    if (!n.wanted || n.seen === undefined) return;
    if (sameContent(n.seen, n.wanted)) {
      n.lastError = undefined;
      if (n.hold) this.endHold(n);
      return;
    }
    if (n.hold) {
      if (n.hold.until === null || Date.now() < n.hold.until) return;
      this.log.warn(
        { name: n.name, service: n.service, heldSince: new Date(n.hold.since).toISOString() },
        `the hold on ${n.name} ran out; the monitor writes its answer again`,
      );
      this.endHold(n);
    }
    await this.write(n, n.wanted);
  }

  private endHold(n: NameState): void {
    n.hold = undefined;
    this.metrics.held.set({ service: n.service, name: n.name }, 0);
  }

  private async write(n: NameState, wanted: Wanted): Promise<void> {
    const current = n.seen ?? null;
    // the entry's TTL and rules stay (rules lose the weights of addresses that went);
    // weights and pick are the policy's: only `weighted` sets them
    const body: EntryData = current ? withAddresses(current, wanted.a, wanted.aaaa) : { a: wanted.a, aaaa: wanted.aaaa, ttl: n.ttl };
    delete body.weights;
    delete body.pick;
    if (wanted.weights) body.weights = wanted.weights;
    if (wanted.pick !== undefined) body.pick = wanted.pick;
    try {
      const entry = await this.call(() => this.admin.put(n.name, body, current?.version ?? 0));
      n.seen = entry;
      n.wrote = wanted;
      n.lastError = undefined;
      n.lastPush = { at: Date.now(), version: entry.version };
      this.metrics.pushes.inc({ service: n.service, result: 'ok' });
      this.log.info(
        { name: n.name, service: n.service, from: describe(current), to: describe(entry), version: entry.version },
        `${n.name}: ${describe(current)} → ${describe(entry)}`,
      );
    } catch (err) {
      if (err instanceof Outage) {
        this.metrics.pushes.inc({ service: n.service, result: 'error' });
        throw err;
      }
      if (err instanceof AdminError && err.status === 412) {
        this.metrics.pushes.inc({ service: n.service, result: 'conflict' });
        await this.read(n);
        // a changed entry that was not a person's (a restart's seed, an earlier write of ours): write again next pass
        if (!n.hold) this.wake();
        return;
      }
      this.metrics.pushes.inc({ service: n.service, result: 'error' });
      this.failed(n, 'write', err);
    }
  }

  /** A refusal that is not an outage (400, 401…): logged once per distinct message, retried on the next pass. */
  private failed(n: NameState, what: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (n.lastError !== message)
      this.log.error({ name: n.name, service: n.service, error: message }, `cannot ${what} ${n.name}: ${message}`);
    n.lastError = message;
  }
}
