// What an RFC 2136 UPDATE message asks of the address table, and what it makes of an
// entry: the zone, prerequisite and update sections read and checked (nothing read from
// the table yet), the prerequisites held against the entries as read, and each name's
// new entry computed from its current one. No I/O here; update-server.ts does that.
//
// divert is not an authority for any zone: the zone section only scopes the names (every
// name must be at or under it), and any zone the key's grants reach is accepted (grants.ts). Only A and AAAA records
// exist in the table, so only they can be added or deleted.

import { DivertError } from '../errors.js';
import { CLASS_IN, TYPE_A, TYPE_AAAA, typeName } from '../wire/header.js';
import { dataOf, withAddresses } from '../entry/entry-ops.js';
import type { Entry, EntryData } from '../entry/entry.js';
import type { WritePolicy } from '../table/write-policy.js';
import { canonicalIPv6 } from '../entry/addresses.js';
import { checkEntryData } from '../entry/check.js';
import { normalizeName } from '../entry/names.js';
import { CLASS_ANY, CLASS_NONE, TYPE_ANY, TYPE_SOA, nameText, type WireMessage, type WireRecord } from './records.js';

/** RFC 2136 2.2 and RFC 1035 4.1.1 response codes. */
export const UpdateRcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
} as const;

/** Types that stand for several and so can never be added (RFC 2136 3.4.1.3). */
const TYPE_AXFR = 252;
const TYPE_MAILB = 253;
const TYPE_MAILA = 254;
const META_TYPES = new Set([TYPE_AXFR, TYPE_MAILB, TYPE_MAILA]);

export type Family = 'a' | 'aaaa';

/** An update that cannot be applied: the response code and why, for the log. */
export class UpdateFailure extends Error {
  constructor(
    readonly rcode: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export type Prerequisite =
  | { kind: 'name-in-use'; name: string }
  | { kind: 'name-not-in-use'; name: string }
  | { kind: 'rrset-exists'; name: string; family: Family }
  | { kind: 'rrset-absent'; name: string; family: Family }
  /** Value-dependent: the RRset is exactly these addresses (RFC 2136 2.4.2). */
  | { kind: 'rrset-equals'; name: string; family: Family; addresses: string[] };

export type Change =
  | { kind: 'add'; family: Family; address: string; ttl: number }
  | { kind: 'delete-rrset'; family: Family }
  | { kind: 'delete-rr'; family: Family; address: string }
  | { kind: 'delete-name' };

export interface UpdateRequest {
  zone: string;
  prerequisites: Prerequisite[];
  /** Each name's changes, in order; names in the order they first appear. */
  changes: Map<string, Change[]>;
}

function familyOf(type: number): Family | null {
  return type === TYPE_A ? 'a' : type === TYPE_AAAA ? 'aaaa' : null;
}

/** An A or AAAA record's address in the table's text form; FORMERR when the RDATA is not one. */
function addressOf(record: WireRecord, family: Family, what: string): string {
  const rdata = record.rdata;
  if (family === 'a') {
    if (rdata.length !== 4) throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: A data of ${rdata.length} bytes`);
    return [...rdata].join('.');
  }
  if (rdata.length !== 16) throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: AAAA data of ${rdata.length} bytes`);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(rdata.readUInt16BE(i).toString(16));
  return canonicalIPv6(groups.join(':'));
}

function isInZone(name: string, zone: string): boolean {
  return zone === '' || name === zone || name.endsWith('.' + zone);
}

/** The record's owner as a table name; NOTZONE outside the zone, REFUSED when the table cannot hold it. */
function ownerOf(record: WireRecord, zone: string, section: string): string {
  const text = nameText(record.name);
  if (!isInZone(text, zone)) throw new UpdateFailure(UpdateRcode.NOTZONE, `${section} "${text}" is not in zone "${zone || '.'}"`);
  try {
    return normalizeName(text);
  } catch (err) {
    if (err instanceof DivertError) throw new UpdateFailure(UpdateRcode.REFUSED, `${section}: ${err.message}`);
    throw err;
  }
}

function describe(record: WireRecord, section: string): string {
  return `${section} "${nameText(record.name) || '.'}" ${typeName(record.type)}`;
}

/** RFC 2136 3.2.1 and 3.2.5, for the forms divert can check (A, AAAA and whole names). */
function readPrerequisite(record: WireRecord, zone: string): Prerequisite {
  const what = describe(record, 'prerequisite');
  if (record.ttl !== 0) throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: TTL ${record.ttl}, expected 0`);
  const name = ownerOf(record, zone, 'prerequisite');
  const family = familyOf(record.type);
  const unsupported = () =>
    new UpdateFailure(UpdateRcode.FORMERR, `${what}: divert holds only A and AAAA records, so it cannot check this prerequisite`);
  if (record.klass === CLASS_ANY || record.klass === CLASS_NONE) {
    if (record.rdata.length !== 0)
      throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: class ${record.klass === CLASS_ANY ? 'ANY' : 'NONE'} with data`);
    const exists = record.klass === CLASS_ANY;
    if (record.type === TYPE_ANY) return { kind: exists ? 'name-in-use' : 'name-not-in-use', name };
    if (!family) throw unsupported();
    return { kind: exists ? 'rrset-exists' : 'rrset-absent', name, family };
  }
  if (record.klass === CLASS_IN) {
    if (!family) throw unsupported();
    return { kind: 'rrset-equals', name, family, addresses: [addressOf(record, family, what)] };
  }
  throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: class ${record.klass}`);
}

/** Value-dependent prerequisites of one name and type make one RRset (RFC 2136 3.2.5). */
function groupPrerequisites(list: Prerequisite[]): Prerequisite[] {
  const out: Prerequisite[] = [];
  const sets = new Map<string, Extract<Prerequisite, { kind: 'rrset-equals' }>>();
  for (const p of list) {
    if (p.kind !== 'rrset-equals') {
      out.push(p);
      continue;
    }
    const key = `${p.name} ${p.family}`;
    const set = sets.get(key);
    if (!set) {
      const copy = { ...p, addresses: [...p.addresses] };
      sets.set(key, copy);
      out.push(copy);
    } else if (!set.addresses.includes(p.addresses[0])) {
      set.addresses.push(p.addresses[0]);
    }
  }
  return out;
}

/** RFC 2136 3.4.1.3 (the prescan), then what divert supports: A and AAAA only. */
function readChange(record: WireRecord, zone: string): { name: string; change: Change } {
  const what = describe(record, 'update');
  const name = ownerOf(record, zone, 'update');
  const family = familyOf(record.type);
  const refused = () => new UpdateFailure(UpdateRcode.REFUSED, `${what}: divert holds only A and AAAA records`);
  if (record.klass === CLASS_IN) {
    if (record.type === TYPE_ANY || META_TYPES.has(record.type))
      throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: cannot add a meta type`);
    if (!family) throw refused();
    return { name, change: { kind: 'add', family, address: addressOf(record, family, what), ttl: record.ttl } };
  }
  if (record.klass === CLASS_ANY) {
    if (record.ttl !== 0 || record.rdata.length !== 0 || META_TYPES.has(record.type)) {
      throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: a deletion (class ANY) needs TTL 0 and no data`);
    }
    if (record.type === TYPE_ANY) return { name, change: { kind: 'delete-name' } };
    if (!family) throw refused();
    return { name, change: { kind: 'delete-rrset', family } };
  }
  if (record.klass === CLASS_NONE) {
    if (record.ttl !== 0 || record.type === TYPE_ANY || META_TYPES.has(record.type)) {
      throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: a deletion of one record (class NONE) needs TTL 0 and a real type`);
    }
    if (!family) throw refused();
    return { name, change: { kind: 'delete-rr', family, address: addressOf(record, family, what) } };
  }
  throw new UpdateFailure(UpdateRcode.FORMERR, `${what}: class ${record.klass}`);
}

/**
 * The request an UPDATE message makes, every record checked; throws UpdateFailure with
 * the response code RFC 2136 gives (FORMERR, NOTAUTH, NOTZONE) or REFUSED for what divert
 * does not hold. Nothing has been read from the table: a failure here changes nothing.
 */
export function readUpdate(message: WireMessage): UpdateRequest {
  if (message.questions.length !== 1) {
    throw new UpdateFailure(UpdateRcode.FORMERR, `the zone section has ${message.questions.length} records, expected 1`);
  }
  const [zoneRecord] = message.questions;
  if (zoneRecord.type !== TYPE_SOA)
    throw new UpdateFailure(UpdateRcode.FORMERR, `the zone section is of type ${typeName(zoneRecord.type)}, expected SOA`);
  const zone = nameText(zoneRecord.name);
  if (zoneRecord.klass !== CLASS_IN)
    throw new UpdateFailure(UpdateRcode.NOTAUTH, `zone "${zone || '.'}" of class ${zoneRecord.klass}: divert holds class IN only`);
  const prerequisites = groupPrerequisites(message.answers.map((r) => readPrerequisite(r, zone)));
  const changes = new Map<string, Change[]>();
  for (const record of message.authority) {
    const { name, change } = readChange(record, zone);
    const list = changes.get(name);
    if (list) list.push(change);
    else changes.set(name, [change]);
  }
  return { zone, prerequisites, changes };
}

/** Every name the request reads: its prerequisites' and its updates'. */
export function namesOf(request: UpdateRequest): string[] {
  return [...new Set([...request.prerequisites.map((p) => p.name), ...request.changes.keys()])];
}

function sameSet(x: readonly string[], y: readonly string[]): boolean {
  return x.length === new Set(y).size && y.every((a) => x.includes(a));
}

/**
 * RFC 2136 3.2.5 against the entries as read (null: not in the table). A name is in use
 * while it has an entry, even one with no addresses: divert answers it (NODATA) rather
 * than forwarding it. An RRset exists when the entry's own list of that family is not
 * empty (local rules are not records of the name).
 */
export function checkPrerequisites(prerequisites: readonly Prerequisite[], entries: ReadonlyMap<string, Entry | null>): void {
  for (const p of prerequisites) {
    const entry = entries.get(p.name) ?? null;
    const fail = (rcode: number, why: string) => new UpdateFailure(rcode, `prerequisite "${p.name}": ${why}`);
    switch (p.kind) {
      case 'name-in-use':
        if (!entry) throw fail(UpdateRcode.NXDOMAIN, 'the name is not in the table');
        break;
      case 'name-not-in-use':
        if (entry) throw fail(UpdateRcode.YXDOMAIN, 'the name is in the table');
        break;
      case 'rrset-exists':
        if (!entry || entry[p.family].length === 0) throw fail(UpdateRcode.NXRRSET, `no ${p.family.toUpperCase()} records`);
        break;
      case 'rrset-absent':
        if (entry && entry[p.family].length > 0) throw fail(UpdateRcode.YXRRSET, `it has ${p.family.toUpperCase()} records`);
        break;
      case 'rrset-equals':
        if (!sameSet(entry?.[p.family] ?? [], p.addresses)) {
          throw fail(UpdateRcode.NXRRSET, `its ${p.family.toUpperCase()} records are not ${p.addresses.join(', ')}`);
        }
        break;
    }
  }
}

/**
 * The entry `current` becomes with `changes` applied in order (null: absent). What the
 * records do not say is kept from the entry as it was read: its TTL (an added record's
 * TTL only sets that of a new entry), pick, rules and the weights of the addresses still
 * listed, as `divert names set` keeps them. Deleting the name drops all of it; a later
 * add in the same message then starts a new entry. Deleting the last address of a
 * family leaves the entry, answered NODATA, as the admin API allows.
 */
export function applyChanges(current: EntryData | null, changes: readonly Change[]): EntryData | null {
  let base: EntryData | null = current;
  let exists = current !== null;
  let ttl = current?.ttl ?? 0;
  const lists = { a: [...(current?.a ?? [])], aaaa: [...(current?.aaaa ?? [])] };
  for (const change of changes) {
    switch (change.kind) {
      case 'delete-name':
        [exists, base, lists.a, lists.aaaa] = [false, null, [], []];
        break;
      case 'delete-rrset':
        lists[change.family] = [];
        break;
      case 'delete-rr':
        lists[change.family] = lists[change.family].filter((address) => address !== change.address);
        break;
      case 'add':
        if (!exists) [exists, ttl] = [true, change.ttl];
        if (!lists[change.family].includes(change.address)) lists[change.family].push(change.address);
        break;
    }
  }
  if (!exists) return null;
  return base ? withAddresses(base, lists.a, lists.aaaa) : { a: lists.a, aaaa: lists.aaaa, ttl };
}

/** Whether a write would change anything: an add of an address already there does not. */
export function sameData(x: EntryData | null, y: EntryData | null): boolean {
  if (x === null || y === null) return x === y;
  return JSON.stringify(dataOf(x)) === JSON.stringify(dataOf(y));
}

/**
 * Each name's new entry, checked as the table will check it and held against the write
 * policy (as the admin API's PUT is); REFUSED (nothing written) when one does not pass.
 */
export function planWrites(
  request: UpdateRequest,
  entries: ReadonlyMap<string, Entry | null>,
  policy: WritePolicy,
): Map<string, EntryData | null> {
  const plan = new Map<string, EntryData | null>();
  for (const [name, changes] of request.changes) {
    const current = entries.get(name) ?? null;
    const next = applyChanges(current, changes);
    if (sameData(current, next)) continue;
    try {
      const checked = next && checkEntryData(next);
      const refusal = checked && policy.refusal(name, checked);
      if (refusal) throw refusal;
      plan.set(name, checked);
    } catch (err) {
      if (err instanceof DivertError) throw new UpdateFailure(UpdateRcode.REFUSED, `update "${name}": ${err.message}`);
      throw err;
    }
  }
  return plan;
}
