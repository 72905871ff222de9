// The local weekday and time of day in an IANA zone. Intl is slow next to a query, so
// each zone keeps one formatter and its last answer until the minute ends.

/** Day of the week (0 = Monday, as DAYS in table.ts) and minutes since local midnight. */
export interface LocalTime {
  day: number;
  minute: number;
}

const MINUTE_MS = 60_000;
const WEEKDAYS: Record<string, number> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 };

interface ZoneClock {
  format: Intl.DateTimeFormat | null;
  /** The minute [from, from + 1 min) that `last` describes. */
  from: number;
  last: LocalTime;
}

// Zones by number, so a compiled rule holds an index instead of a name to look up.
const ids = new Map<string, number>();
const clocks: ZoneClock[] = [];

/** The number of zone `tz` (valid, as checked), registered on first use. */
export function zoneId(tz: string): number {
  let id = ids.get(tz);
  if (id === undefined) {
    const format =
      tz === 'UTC'
        ? null
        : // en-US: weekday names are parsed below; h23: midnight is 00, never 24
          new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'short', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' });
    id = clocks.push({ format, from: NaN, last: { day: 0, minute: 0 } }) - 1;
    ids.set(tz, id);
  }
  return id;
}

function compute(format: Intl.DateTimeFormat | null, now: number): LocalTime {
  if (!format) {
    const date = new Date(now);
    return { day: (date.getUTCDay() + 6) % 7, minute: date.getUTCHours() * 60 + date.getUTCMinutes() };
  }
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const part of format.formatToParts(now)) {
    if (part.type === 'weekday') day = WEEKDAYS[part.value];
    else if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return { day, minute: hour * 60 + minute };
}

/** Local weekday and minute of the day at `now` (ms since the epoch) in zone number `id`. */
export function localTimeIn(id: number, now: number): LocalTime {
  const clock = clocks[id];
  const from = Math.floor(now / MINUTE_MS) * MINUTE_MS;
  if (from !== clock.from) {
    clock.last = compute(clock.format, now);
    clock.from = from;
  }
  return clock.last;
}
