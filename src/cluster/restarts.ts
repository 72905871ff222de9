// When a worker of `divert serve --workers N` that exited is started again. Each worker
// slot has a back-off of its own, forgotten once its worker has served for a while, so a
// worker that crashes once a day is replaced at once every time; and while no worker is
// alive at all, the next start is at most a second away whatever the back-off says, so a
// crash that repeats (a packet of death, say) costs capacity but never leaves DNS down
// for the length of a back-off. The primary (src/cluster/primary.ts) does the starting.

import type { SlotRestart } from '../serving/handle.js';
export interface RestartTimes {
  /** The wait after a first crash, doubled with each crash in a row... */
  firstDelayMs: number;
  /** ...up to this. */
  maxDelayMs: number;
  /** A worker that has served this long is forgiven its slot's crashes. */
  stableMs: number;
  /** The longest wait while no other worker is alive (serving or starting). */
  aloneDelayMs: number;
}

// 0.5 s: a crash at start-up (Redis away, say) is not retried in a hot loop; 30 s: a slot
// that keeps crashing costs a fork and a log line at most twice a minute; 10 s: longer
// than a start-up takes (a second or two), so a worker crashing right after it starts
// keeps backing off; 1 s: the longest DNS goes unanswered for want of a process.
export const RESTART_TIMES: RestartTimes = { firstDelayMs: 500, maxDelayMs: 30_000, stableMs: 10_000, aloneDelayMs: 1000 };

interface Slot {
  crashes: number;
  /** Workers started in this slot to replace one that exited. */
  restarts: number;
  servingSince?: number;
  /** Set while waiting for a start. */
  dueAt?: number;
  timer?: NodeJS.Timeout;
}

export class RestartSchedule {
  private readonly slots: Slot[];
  private stopped = false;

  constructor(
    count: number,
    /** Starts a worker in `slot` (0-based); it reports back through serving() or exited(). */
    private readonly start: (slot: number) => void,
    private readonly times: RestartTimes = RESTART_TIMES,
    private readonly now: () => number = Date.now,
  ) {
    this.slots = Array.from({ length: count }, () => ({ crashes: 0, restarts: 0 }));
  }

  /** The worker of `slot` is serving from now on. */
  serving(slot: number): void {
    this.slots[slot].servingSince = this.now();
  }

  /**
   * The worker of `slot` exited unasked (a crash, or a failed start); `othersAlive`: another
   * worker is serving or starting. Schedules the slot's next start and says what it did.
   */
  exited(slot: number, othersAlive: boolean): { crashes: number; delayMs: number; upMs: number | null } {
    const s = this.slots[slot];
    const now = this.now();
    const upMs = s.servingSince === undefined ? null : now - s.servingSince;
    if (upMs !== null && upMs >= this.times.stableMs) s.crashes = 0;
    s.servingSince = undefined;
    s.crashes++;
    const backOff = Math.min(this.times.maxDelayMs, this.times.firstDelayMs * 2 ** Math.min(s.crashes - 1, 20));
    const delayMs = othersAlive ? backOff : Math.min(backOff, this.times.aloneDelayMs);
    if (!this.stopped) {
      clearTimeout(s.timer);
      s.dueAt = now + delayMs;
      s.timer = setTimeout(() => {
        s.timer = undefined;
        s.dueAt = undefined;
        s.restarts++;
        this.start(slot);
      }, delayMs).unref();
    }
    return { crashes: s.crashes, delayMs, upMs };
  }

  /** Per slot, the workers started to replace one that exited. */
  restarts(): number[] {
    return this.slots.map((s) => s.restarts);
  }

  /** The slots whose worker is not serving after a crash. */
  restarting(): SlotRestart[] {
    const now = this.now();
    return this.slots.flatMap((s, slot): SlotRestart[] => {
      if (s.servingSince !== undefined || s.crashes === 0) return [];
      if (s.dueAt === undefined) return [{ worker: slot + 1, crashes: s.crashes, state: 'starting' }];
      return [
        {
          worker: slot + 1,
          crashes: s.crashes,
          state: 'waiting',
          nextStartAt: new Date(s.dueAt).toISOString(),
          nextStartInMs: Math.max(0, s.dueAt - now),
        },
      ];
    });
  }

  /** No more starts: the server is stopping. */
  stop(): void {
    this.stopped = true;
    for (const s of this.slots) clearTimeout(s.timer);
  }
}
