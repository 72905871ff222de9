// Timers that all run for the same time, as every forwarded query's first one does (the
// attempt timeout, or the query timeout when that is shorter): armed in the order they fall
// due, so one queue and one node timer serve them all, instead of a Timeout object, an
// async ID and a list insertion and removal per query. A timer is cancelled by its ticket:
// its slot is emptied at once, so the queue never keeps what it timed alive, and the
// emptied slot is passed over when its time comes. Once none is left armed, the node timer
// no longer holds the process (unref), but it stays, to be held again by the next timer
// armed: at a few queries at a time, each query would otherwise make and drop a Timeout
// (an allocation, an async ID, a list insertion and removal). When it fires for nothing,
// or before the head's time, it re-arms for what is there. What is
// armed and not cancelled falls due in the order armed, no sooner than its delay (later
// when the event loop is busy, as with setTimeout).

/** What a timer calls when it falls due. */
export interface Due {
  due(): void;
}

/** A ticket no timer has: cancel() ignores it. */
export const NO_TIMER = -1;

export class FixedDelayTimers {
  private items: (Due | null)[] = new Array<Due | null>(256).fill(null);
  private at = new Float64Array(256);
  /** Tickets: the first still queued, and the next to give; slot = ticket & mask. */
  private head = 0;
  private tail = 0;
  /** Armed and neither cancelled nor fallen due. */
  private live = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly delayMs: number,
    /** A monotonic clock: a step of the wall clock must not move a timeout. */
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Timers armed and neither cancelled nor fallen due. */
  get armed(): number {
    return this.live;
  }

  /** Arms a timer for `item`, falling due delayMs after `now` (the clock's reading); its ticket. */
  add(item: Due, now: number): number {
    if (this.tail - this.head === this.items.length) this.grow();
    const ticket = this.tail++;
    const i = ticket & (this.items.length - 1);
    this.items[i] = item;
    this.at[i] = now + this.delayMs;
    // the node timer, kept while none was armed, is due no later than this one: it re-arms
    if (++this.live === 1 && this.timer !== undefined) this.timer.ref();
    else if (this.timer === undefined) this.arm(now);
    return ticket;
  }

  /** The timer will not fall due (a ticket already due, cancelled or NO_TIMER: nothing happens). */
  cancel(ticket: number): void {
    if (ticket < this.head || ticket >= this.tail) return;
    const i = ticket & (this.items.length - 1);
    if (this.items[i] === null) return;
    this.items[i] = null;
    if (--this.live > 0) return;
    // none left: the emptied slots are dropped, and the node timer holds the process no more
    this.timer?.unref();
    this.head = this.tail;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const now = this.clock();
    while (this.head < this.tail) {
      const i = this.head & (this.items.length - 1);
      const item = this.items[i];
      if (item !== null && this.at[i] > now) break;
      this.items[i] = null;
      this.head++;
      if (item === null) continue;
      this.live--;
      // what it does may arm another: that one falls due after now, behind the rest
      item.due();
    }
    if (this.head < this.tail && this.timer === undefined) this.arm(now);
  };

  private arm(now: number): void {
    const i = this.head & (this.items.length - 1);
    this.timer = setTimeout(this.fire, Math.max(0, this.at[i] - now));
  }

  /** Twice the room, the queue's order kept. */
  private grow(): void {
    const size = this.items.length;
    const items = new Array<Due | null>(size * 2).fill(null);
    const at = new Float64Array(size * 2);
    for (let t = this.head; t < this.tail; t++) {
      items[t & (size * 2 - 1)] = this.items[t & (size - 1)];
      at[t & (size * 2 - 1)] = this.at[t & (size - 1)];
    }
    this.items = items;
    this.at = at;
  }
}
