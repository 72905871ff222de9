// A rule's time window: its days and minutes of the local day in an IANA zone, and
// whether it holds at a given local time.

import { DAYS, type Rule } from '../entry/entry.js';
import { minutesOf } from '../entry/check-rules.js';
import { zoneId } from './local-time.js';

/** A rule's days (bit 0 = Monday) and window in minutes of the local day, in zone `zone`. */
export interface Window {
  days: number;
  from: number;
  to: number;
  zone: number;
}

export function compileWindow(rule: Rule): Window | null {
  if (!rule.days && !rule.from) return null;
  let days = 0x7f;
  if (rule.days) {
    days = 0;
    for (const day of rule.days) days |= 1 << DAYS.indexOf(day);
  }
  return {
    days,
    from: rule.from ? minutesOf(rule.from) : 0,
    to: rule.to ? minutesOf(rule.to) : 1440,
    zone: zoneId(rule.tz ?? 'UTC'),
  };
}

/**
 * Whether the window holds at local `day` and `minute`. A window whose end is before its
 * start runs past midnight, and `days` then names the day the window started: fri
 * 22:00–06:00 holds from Friday 22:00 to Saturday 06:00.
 */
export function windowHolds(days: number, from: number, to: number, day: number, minute: number): boolean {
  if (from < to) return minute >= from && minute < to && (days & (1 << day)) !== 0;
  if (minute >= from) return (days & (1 << day)) !== 0;
  if (minute < to) return (days & (1 << ((day + 6) % 7))) !== 0;
  return false;
}
