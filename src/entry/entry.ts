// The entry model: what the address table holds for a name, its changes and their
// history. Plain data shared by every layer (the stores, the query path, the admin API,
// the monitor, the CLI); checks live in check.ts, names in names.ts.

/** Days of the week as rules name them. */
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Day = (typeof DAYS)[number];

/**
 * Load sharing over an answer's addresses. `weights` maps an address of the answer to a
 * whole number 0–1000 (an address without one weighs 1). Each query puts one address
 * first, chosen with probability weight / sum of the family's weights; the others follow
 * by weight (a family that weighs 0 in all is shared equally). With `pick`, only that
 * many addresses of each family are answered.
 */
export interface Sharing {
  weights?: Record<string, number>;
  pick?: number;
}

/**
 * A local rule: evaluated per query, in order, before the entry's own addresses; the first
 * whose every given condition holds gives the answer. A family it does not list is
 * answered from the entry's own list.
 */
export interface Rule extends Sharing {
  /** Client networks (CIDR): the query's EDNS Client Subnet when it comes from a trusted
   * resolver (--trust-ecs), else the source address. */
  networks?: string[];
  /** Days of the week, in `tz` (absent: every day). */
  days?: Day[];
  /** A local time window "HH:MM"–"HH:MM" in `tz`, start included, end excluded; an end
   * before the start runs past midnight; "24:00" is the end of the day. Both or neither. */
  from?: string;
  to?: string;
  /** IANA time zone of `days` and the window (absent: UTC). */
  tz?: string;
  a?: string[];
  aaaa?: string[];
}

export interface EntryData extends Sharing {
  /** IPv4 addresses, dotted quad. */
  a: string[];
  /** IPv6 addresses, canonical text form. */
  aaaa: string[];
  ttl: number;
  /** Local rules, first match wins; absent when there are none. */
  rules?: Rule[];
}

export interface Entry extends EntryData {
  /** Lower-case name without the trailing dot; `*.` as the whole leftmost label marks a wildcard. */
  name: string;
  /** Grows with every change of this entry; taken from a table-wide sequence. */
  version: number;
  /** ISO 8601 time of the last change. */
  updatedAt: string;
  /** Who made the last change: the `by` of its newest history record. Absent on entries
   * stored before divert kept it here. */
  updatedBy?: string;
}

/** One change of the table: `entry` is null when the name was deleted. */
export interface ChangeEvent {
  name: string;
  entry: Entry | null;
  version: number;
}

export type ChangeListener = (event: ChangeEvent) => void;

/** The answerable part of an entry before or after a change (null: absent). */
export type EntryState = EntryData | null;

/** One change of one entry, as kept in its history (newest first, bounded). */
export interface HistoryRecord {
  version: number;
  /** ISO 8601. */
  at: string;
  op: 'put' | 'delete' | 'divert' | 'import' | 'seed';
  by: string;
  old: EntryState;
  new: EntryState;
}
