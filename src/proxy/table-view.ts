// The proxy's copy of what it needs from divert serve's table: the entries of the names
// its services target and the diversions in force. Read over the admin API at start, then
// kept current from GET /v1/events; read again whole after the stream breaks or the server
// says resync. While divert serve is away the last copy stays in use.

import type { Logger } from 'pino';
import { AdminError, type AdminClient } from '../client/admin-client.js';
import type { Connection } from '../client/connection.js';
import { openEventStream, type EventStream } from '../client/event-stream.js';
import type { Entry } from '../entry/entry.js';
import { wildcardCandidates } from '../entry/names.js';
import { knownEntry, type KnownEntry } from './answer.js';

/** Pauses between attempts to reach divert serve again: short at first, a few seconds at most. */
const RETRY_MS = [100, 250, 500, 1000, 2000, 5000];

export type ViewChange = { kind: 'name'; name: string } | { kind: 'diversions' } | { kind: 'all' };

export interface AdminState {
  up: boolean;
  /** ISO time the state began. */
  since: string;
  error: string | null;
}

export class TableView {
  /** Per target name: its entry (the name's own, or the wildcard that answers it); null: not intercepted. */
  private readonly entries = new Map<string, KnownEntry | null>();
  private diversionMap = new Map<string, string>();
  /** Table names whose change concerns a target name (itself and the wildcards above it). */
  private readonly watched = new Map<string, string[]>();
  private stream: EventStream | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private state: AdminState = { up: false, since: new Date().toISOString(), error: 'not reached yet' };
  private readonly listeners: ((change: ViewChange) => void)[] = [];
  /**
   * How many times the stream has changed each target name ('' for the diversions): a read
   * begun before a change may return what the change replaced, so it is applied only where
   * no change came in meanwhile.
   */
  private readonly changes = new Map<string, number>();

  constructor(
    private readonly client: AdminClient,
    private readonly connection: Connection,
    names: readonly string[],
    private readonly log: Logger,
  ) {
    for (const name of new Set(names)) {
      this.entries.set(name, null);
      for (const candidate of wildcardCandidates(name)) this.watched.set(candidate, [...(this.watched.get(candidate) ?? []), name]);
    }
  }

  onChange(listener: (change: ViewChange) => void): void {
    this.listeners.push(listener);
  }

  entry(name: string): KnownEntry | null {
    return this.entries.get(name) ?? null;
  }

  get diversions(): ReadonlyMap<string, string> {
    return this.diversionMap;
  }

  admin(): AdminState {
    return this.state;
  }

  /** Reads the table once (true: it was reached) and follows it from then on. */
  async start(): Promise<boolean> {
    const reached = await this.sync();
    this.follow();
    return reached;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.stream?.close();
  }

  /** Everything the proxy needs, read again. False (and the copy kept) when the admin API is away. */
  private async sync(): Promise<boolean> {
    try {
      const names = [...this.entries.keys()];
      const before = new Map(this.changes);
      const entries = await Promise.all(names.map((name) => this.resolve(name)));
      const diversions = await this.readDiversions();
      const unchanged = (key: string) => this.changes.get(key) === before.get(key);
      names.forEach((name, i) => {
        if (unchanged(name)) this.entries.set(name, entries[i]);
      });
      if (unchanged('')) this.diversionMap = diversions;
      this.reached();
      this.emit({ kind: 'all' });
      return true;
    } catch (err) {
      this.lost(err);
      return false;
    }
  }

  /** The entry that answers `name`: its own, else the nearest wildcard's. */
  private async resolve(name: string): Promise<KnownEntry | null> {
    for (const candidate of wildcardCandidates(name)) {
      try {
        return knownEntry(await this.client.get(candidate));
      } catch (err) {
        if (err instanceof AdminError && err.status === 404) continue;
        throw err;
      }
    }
    return null;
  }

  private async readDiversions(): Promise<Map<string, string>> {
    try {
      const diversions = await this.client.diversions();
      return new Map(diversions.map((d) => [d.from, d.to]));
    } catch (err) {
      // a divert serve from before diversions were kept: address targets stay where they are
      if (err instanceof AdminError && (err.status === 404 || err.status === 405)) return new Map();
      throw err;
    }
  }

  private follow(): void {
    if (this.stopped) return;
    let opened = false;
    this.stream = openEventStream(this.connection, {
      onOpen: () => {
        opened = true;
        // whatever changed while no stream was open is read now
        void this.sync();
      },
      onEvent: (type, data) => this.event(type, data),
      onEnd: (reason) => {
        if (this.stopped) return;
        if (!opened || this.state.up) this.lost(new Error(`event stream: ${reason}`));
        const pause = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
        this.failures++;
        this.retry = setTimeout(() => this.follow(), pause);
      },
    });
  }

  private event(type: string, data: unknown): void {
    if (type === 'resync') {
      void this.sync();
      return;
    }
    if (type === 'diversion') {
      const mine = this.changed('');
      void this.readDiversions().then(
        (map) => {
          if (this.changes.get('') !== mine) return; // a later event's read applies instead
          this.diversionMap = map;
          this.emit({ kind: 'diversions' });
        },
        (err: unknown) => this.lost(err),
      );
      return;
    }
    if (type !== 'change') return;
    const change = data as { name?: unknown; entry?: Entry | null };
    if (typeof change.name !== 'string') return;
    for (const target of this.watched.get(change.name) ?? []) {
      const mine = this.changed(target);
      if (change.name === target) {
        this.entries.set(target, change.entry ? knownEntry(change.entry) : null);
        this.emit({ kind: 'name', name: target });
        if (change.entry) continue;
      }
      // a wildcard above it changed, or the name itself went: which entry answers is read again
      void this.resolve(target).then(
        (entry) => {
          if (this.changes.get(target) !== mine) return; // a later event's value stands
          this.entries.set(target, entry);
          this.emit({ kind: 'name', name: target });
        },
        (err: unknown) => this.lost(err),
      );
    }
  }

  /** Counts a change from the stream to `key` and returns its number. */
  private changed(key: string): number {
    const n = (this.changes.get(key) ?? 0) + 1;
    this.changes.set(key, n);
    return n;
  }

  private reached(): void {
    this.failures = 0;
    if (this.state.up) return;
    if (this.state.error !== 'not reached yet') this.log.info('divert serve is reachable again: the table is read and followed');
    this.state = { up: true, since: new Date().toISOString(), error: null };
  }

  private lost(err: unknown): void {
    const error = err instanceof Error ? err.message : String(err);
    if (this.state.up || this.state.error === 'not reached yet')
      this.log.warn({ error }, 'divert serve is unreachable: the last table read stays in use until it is back');
    if (this.state.up || this.state.error !== error) this.state = { up: false, since: new Date().toISOString(), error };
  }

  private emit(change: ViewChange): void {
    for (const listener of this.listeners) listener(change);
  }
}
