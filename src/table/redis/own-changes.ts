// Each change once, in version order, to the Redis store's listeners. A write's script
// publishes its change on the subscriber connection while its reply comes back on the
// command connection, and either may arrive first. So messages that arrive while this
// store has writes in flight are held until those writes have returned their versions;
// a message whose version is one of ours was already emitted (before the write returned)
// and is dropped; any other is emitted.

import { OwnVersions } from './own-versions.js';

/** A change with its place in the table's version sequence: an entry's, or a diversion record's. */
export interface Versioned {
  version: number;
}

export class OwnChanges<ChangeEvent extends Versioned> {
  private inFlight = 0;
  /** A queue: `held[heldAt]` is the oldest (shift() would copy a long one per message). */
  private held: ChangeEvent[] = [];
  private heldAt = 0;
  private readonly own = new OwnVersions();

  constructor(private readonly emit: (event: ChangeEvent) => void) {}

  /** A write script is about to be sent. */
  begin(): void {
    this.inFlight++;
  }

  /** The write failed: it has no changes; held messages go out once no other write is in flight. */
  failed(): void {
    this.inFlight--;
    this.release(Infinity);
  }

  /**
   * The write succeeded with these changes (none for a refused one): remembers their
   * versions, emits held messages older than them, then them (before the write's promise
   * resolves), then, when no other write is in flight, every held message that is not ours.
   */
  settle(events: ChangeEvent[]): void {
    events.sort((x, y) => x.version - y.version);
    this.own.add(events.map((event) => event.version));
    this.release(events.length > 0 ? events[0].version : -Infinity);
    for (const event of events) this.emit(event);
    this.inFlight--;
    this.release(Infinity);
  }

  /** One message from the changes channel. */
  received(event: ChangeEvent): void {
    if (this.inFlight > 0) this.held.push(event);
    else this.deliver(event);
  }

  /** Emits held messages with versions below `below`, all of them only when no write is in flight. */
  private release(below: number): void {
    if (below === Infinity && this.inFlight > 0) return;
    while (this.heldAt < this.held.length && this.held[this.heldAt].version < below) this.deliver(this.held[this.heldAt++]);
    if (this.heldAt === this.held.length || (this.heldAt > 1024 && this.heldAt * 2 > this.held.length)) {
      this.held = this.held.slice(this.heldAt);
      this.heldAt = 0;
    }
  }

  private deliver(event: ChangeEvent): void {
    if (!this.own.take(event.version)) this.emit(event);
  }
}
